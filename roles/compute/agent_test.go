package compute

// A test agent: the test binary re-executed inside a network namespace runs
// the compute driver against a real LXD, the way cloudd's loop does, with a
// JSON file standing in for the cluster database and unix sockets standing
// in for cloudd's cluster API. It lets the driver be tested against real LXD
// clusters without cloudd; tests/compute_test.go tests it through cloudd.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
	"github.com/cloudctl/cloudctl/supervisor"
)

const agentEnv = "COMPUTE_TEST_AGENT"

// agentConfig is one agent's identity; the nodes come from the shared file.
type agentConfig struct {
	Name  string `json:"name"`
	Root  string `json:"root"` // the test directory: <root>/<node>/...
	Nodes string `json:"nodes"`
}

// agentNode is a node as the shared file lists it.
type agentNode struct {
	Name  string       `json:"name"`
	IP    string       `json:"ip"`
	Roles []roles.Role `json:"roles"`
}

func TestMain(m *testing.M) {
	if cfg := os.Getenv(agentEnv); cfg != "" {
		os.Exit(runAgent(cfg))
	}
	os.Exit(m.Run())
}

func agentSocket(root, node string) string { return filepath.Join(root, node, "agent.sock") }

// sockPeers reaches other agents over their unix sockets.
type sockPeers struct{ root string }

func (p sockPeers) Get(ctx context.Context, node, path string, out any) error {
	return agentCall(ctx, p.root, node, http.MethodGet, path, nil, out)
}

func (p sockPeers) Post(ctx context.Context, node, path string, in, out any) error {
	return fmt.Errorf("no POST %s on %s in this test", path, node)
}

func agentCall(ctx context.Context, root, node, method, path string, body any, out any) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", agentSocket(root, node))
	}}}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://agent/1.0/"+path, rd)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("agent %s: %w", node, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("agent %s %s %s: %d: %s", node, method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func runAgent(cfgJSON string) int {
	var cfg agentConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "agent config:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", cfg.Name)
	m, err := manifests.Default()
	if err != nil {
		log.Error("manifest", "error", err)
		return 2
	}
	sup := supervisor.New(nil, log)
	d := New()
	dir := filepath.Join(cfg.Root, cfg.Name, "compute")
	envOf := func() (*driver.Env, error) {
		b, err := os.ReadFile(cfg.Nodes)
		if err != nil {
			return nil, err
		}
		var ns []agentNode
		if err := json.Unmarshal(b, &ns); err != nil {
			return nil, err
		}
		env := &driver.Env{Dir: dir, Sup: sup, Log: log, Manifest: m, Peers: sockPeers{cfg.Root}, Now: time.Now}
		for i, n := range ns {
			dn := driver.Node{Name: n.Name, Address: n.IP + ":7443", IP: n.IP, Roles: n.Roles, JoinedAt: time.Unix(int64(i), 0)}
			env.Nodes = append(env.Nodes, dn)
			if n.Name == cfg.Name {
				env.Local = dn
			}
		}
		if env.Local.Name == "" {
			env.Local = driver.Node{Name: cfg.Name}
		}
		return env, nil
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	_ = os.Remove(agentSocket(cfg.Root, cfg.Name))
	ln, err := net.Listen("unix", agentSocket(cfg.Root, cfg.Name))
	if err != nil {
		log.Error("listen", "error", err)
		return 2
	}
	var loop sync.Mutex // held by a round, and by a recovery
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any, err error) {
		if err != nil {
			http.Error(w, err.Error(), driver.StatusCode(err))
			return
		}
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("/1.0/", func(w http.ResponseWriter, r *http.Request) {
		env, err := envOf()
		if err != nil {
			reply(w, nil, err)
			return
		}
		path := strings.TrimPrefix(r.URL.Path, "/1.0/")
		switch {
		case path == "recover" && r.Method == http.MethodPost:
			// As cloudd's recovery: the loop is paused while it runs. It
			// runs in the background; the log says how it ended.
			lost := strings.Split(r.URL.Query().Get("lost"), ",")
			go func() {
				loop.Lock()
				defer loop.Unlock()
				rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
				defer cancel()
				if err := d.RecoverAlone(rctx, env, lost); err != nil {
					log.Error("recover failed", "error", err)
					return
				}
				log.Info("recover done")
			}()
			reply(w, map[string]string{}, nil)
			return
		case path == "status":
			reply(w, d.Status(r.Context(), env), nil)
			return
		case strings.HasPrefix(path, "guard/"):
			err := d.Guard(r.Context(), env, driver.Change{Kind: driver.RemoveRole, Node: strings.TrimPrefix(path, "guard/"), Role: roles.Compute})
			msg := ""
			if err != nil {
				msg = err.Error()
			}
			reply(w, map[string]string{"refused": msg}, nil)
			return
		}
		for _, ep := range d.Endpoints() {
			if ep.Method != r.Method {
				continue
			}
			if vars, ok := matchPath(ep.Path, path); ok {
				v, err := ep.Handler(r.Context(), env, driver.Request{Vars: vars, Query: r.URL.Query(), Body: r.Body, Local: true})
				reply(w, v, err)
				return
			}
		}
		http.NotFound(w, r)
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	applied := false
	for {
		env, err := envOf()
		if err == nil {
			step := func(s driver.Step) { log.Info("step", "name", s.Name, "state", s.State, "detail", s.Detail) }
			loop.Lock()
			if d.AppliesTo(env, env.Local) {
				applied = true
				if _, err := d.Converge(ctx, env, step); err != nil {
					log.Warn("converge", "error", err)
				}
			} else if applied {
				_ = d.Stop(ctx)
				applied = false
			}
			loop.Unlock()
		}
		select {
		case <-ctx.Done():
			_ = d.Stop(context.Background())
			return 0
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func matchPath(pattern, path string) (map[string]string, bool) {
	pp, ps := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(pp) != len(ps) {
		return nil, false
	}
	vars := map[string]string{}
	for i := range pp {
		if strings.HasPrefix(pp[i], "{") && strings.HasSuffix(pp[i], "}") {
			vars[strings.Trim(pp[i], "{}")] = ps[i]
		} else if pp[i] != ps[i] {
			return nil, false
		}
	}
	return vars, true
}

var _ = api.LayerCompute
