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

// Get implements driver.Peers.
func (p *peerClient) Get(ctx context.Context, node, path string, out any) error {
	p.mu.Lock()
	addr := p.addrs[node]
	p.mu.Unlock()
	if addr == "" {
		return fmt.Errorf("no address known for member %s", node)
	}
	hc, err := p.client()
	if err != nil {
		return err
	}
	u := url.URL{Scheme: "https", Host: addr, Path: "/" + PathPrefix + "/" + path}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("ask %s: %w", node, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("ask %s: %w", node, err)
	}
	defer resp.Body.Close()
	var env struct {
		Metadata json.RawMessage `json:"metadata"`
		Error    string          `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&env); err != nil {
		return fmt.Errorf("ask %s: decode answer: %w", node, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ask %s: %s: %s", node, resp.Status, env.Error)
	}
	if err := json.Unmarshal(env.Metadata, out); err != nil {
		return fmt.Errorf("ask %s: decode answer: %w", node, err)
	}
	return nil
}

// Post implements driver.Peers. Its client has no overall timeout of its
// own (ctx bounds the call): the member may work for minutes before it
// answers.
func (p *peerClient) Post(ctx context.Context, node, path string, in, out any) error {
	p.mu.Lock()
	addr := p.addrs[node]
	p.mu.Unlock()
	if addr == "" {
		return fmt.Errorf("no address known for member %s", node)
	}
	hc, err := p.client()
	if err != nil {
		return err
	}
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("ask %s: %w", node, err)
	}
	u := url.URL{Scheme: "https", Host: addr, Path: "/" + PathPrefix + "/" + path}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("ask %s: %w", node, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: hc.Transport}).Do(req)
	if err != nil {
		return fmt.Errorf("ask %s: %w", node, err)
	}
	defer resp.Body.Close()
	var env struct {
		Metadata json.RawMessage `json:"metadata"`
		Error    string          `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&env); err != nil {
		return fmt.Errorf("ask %s: decode answer: %w", node, err)
	}
	if resp.StatusCode != http.StatusOK {
		return driver.HTTPError{Code: resp.StatusCode, Err: errors.New(env.Error)}
	}
	if out == nil || len(env.Metadata) == 0 {
		return nil
	}
	if err := json.Unmarshal(env.Metadata, out); err != nil {
		return fmt.Errorf("ask %s: decode answer: %w", node, err)
	}
	return nil
}
