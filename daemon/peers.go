package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/canonical/microcluster/state"

	"github.com/cloudctl/cloudctl/client"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// peerHTTP is an HTTPS client that presents this member's certificate and
// accepts only peers holding the cluster certificate.
func peerHTTP(s *state.State, timeout time.Duration) (*http.Client, error) {
	fp, err := clusterFingerprint(s)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{TLSClientConfig: client.PinnedTLS(fp, s.ServerCert().KeyPair()), MaxIdleConnsPerHost: 2, IdleConnTimeout: 90 * time.Second}
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}

// peerClient is the drivers' way to other members' cloudd (driver.Peers):
// one pinned-TLS client kept across rounds, so a cluster at rest does not
// pay a TLS handshake per call.
type peerClient struct {
	d *Daemon

	mu    sync.Mutex
	hc    *http.Client
	fp    string
	addrs map[string]string
}

func newPeerClient(d *Daemon) *peerClient { return &peerClient{d: d, addrs: map[string]string{}} }

// setAddresses records where each member listens (from the latest env).
func (p *peerClient) setAddresses(addrs map[string]string) {
	p.mu.Lock()
	p.addrs = addrs
	p.mu.Unlock()
}

func (p *peerClient) client() (*http.Client, error) {
	s := p.d.getState()
	if s == nil {
		return nil, fmt.Errorf("cloudd is not part of a cluster yet")
	}
	fp, err := clusterFingerprint(s)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hc != nil && p.fp == fp {
		return p.hc, nil
	}
	if p.hc != nil {
		p.hc.CloseIdleConnections()
	}
	hc, err := peerHTTP(s, 5*time.Second)
	if err != nil {
		return nil, err
	}
	p.hc, p.fp = hc, fp
	return hc, nil
}

func (p *peerClient) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hc != nil {
		p.hc.CloseIdleConnections()
	}
}

// answer is a member's reply to one peer request.
type answer struct {
	code     int
	status   string
	metadata json.RawMessage
	err      string
}

// send makes one request of the member called node and decodes the reply's
// envelope. A body is sent as JSON. wait drops the client's own 5 s limit
// (ctx bounds the call): the member may work for minutes before it answers.
func (p *peerClient) send(ctx context.Context, node, method, path string, body []byte, wait bool) (answer, error) {
	p.mu.Lock()
	addr := p.addrs[node]
	p.mu.Unlock()
	if addr == "" {
		return answer{}, fmt.Errorf("no address known for member %s", node)
	}
	hc, err := p.client()
	if err != nil {
		return answer{}, err
	}
	if wait {
		hc = &http.Client{Transport: hc.Transport}
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	u := url.URL{Scheme: "https", Host: addr, Path: "/" + PathPrefix + "/" + path}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return answer{}, fmt.Errorf("ask %s: %w", node, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("ask %s: %w", node, err)
	}
	defer resp.Body.Close()
	var env struct {
		Metadata json.RawMessage `json:"metadata"`
		Error    string          `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&env); err != nil {
		return answer{}, fmt.Errorf("ask %s: decode answer: %w", node, err)
	}
	return answer{code: resp.StatusCode, status: resp.Status, metadata: env.Metadata, err: env.Error}, nil
}

// Get implements driver.Peers.
func (p *peerClient) Get(ctx context.Context, node, path string, out any) error {
	a, err := p.send(ctx, node, http.MethodGet, path, nil, false)
	if err != nil {
		return err
	}
	if a.code != http.StatusOK {
		return fmt.Errorf("ask %s: %s: %s", node, a.status, a.err)
	}
	if err := json.Unmarshal(a.metadata, out); err != nil {
		return fmt.Errorf("ask %s: decode answer: %w", node, err)
	}
	return nil
}

// Post implements driver.Peers: no client limit of its own (send's wait).
func (p *peerClient) Post(ctx context.Context, node, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("ask %s: %w", node, err)
	}
	a, err := p.send(ctx, node, http.MethodPost, path, body, true)
	if err != nil {
		return err
	}
	if a.code != http.StatusOK {
		return driver.HTTPError{Code: a.code, Err: errors.New(a.err)}
	}
	if out == nil || len(a.metadata) == 0 {
		return nil
	}
	if err := json.Unmarshal(a.metadata, out); err != nil {
		return fmt.Errorf("ask %s: decode answer: %w", node, err)
	}
	return nil
}
