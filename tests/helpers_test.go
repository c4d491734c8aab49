package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/tests/harness"
)

func status(t testing.TB, nd *harness.Node) (api.Status, error) {
	t.Helper()
	r := nd.Run("status", "--format", "json")
	if r.Code != 0 {
		return api.Status{}, fmt.Errorf("status on %s: exit %d: %s", nd.Name, r.Code, r.Stderr)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		return st, fmt.Errorf("status json: %v: %s", err, r.Stdout)
	}
	return st, nil
}

func mustStatus(t testing.TB, nd *harness.Node) api.Status {
	t.Helper()
	st, err := status(t, nd)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func member(st api.Status, name string) *api.Node {
	for i := range st.Members {
		if st.Members[i].Name == name {
			return &st.Members[i]
		}
	}
	return nil
}

func voters(st api.Status) int {
	n := 0
	for _, m := range st.Members {
		if m.DqliteRole == "voter" {
			n++
		}
	}
	return n
}

// token asks nd for a join token for name.
func token(t testing.TB, nd *harness.Node, name string, extra ...string) string {
	t.Helper()
	out := nd.MustRun(t, append([]string{"cluster", "add", name, "--quiet"}, extra...)...)
	return strings.TrimSpace(out)
}

// bootstrap bootstraps node1 with all roles.
func bootstrap(t testing.TB, nd *harness.Node, roles string) time.Duration {
	t.Helper()
	start := time.Now()
	nd.MustRun(t, "bootstrap", "--name", nd.Name, "--address", nd.IP, "--role", roles)
	return time.Since(start)
}

func join(t testing.TB, boot, nd *harness.Node, roles string) time.Duration {
	t.Helper()
	tok := token(t, boot, nd.Name)
	start := time.Now()
	nd.MustRun(t, "cluster", "join", "--token-file", tokenFile(t, nd, tok), "--role", roles, "--address", nd.IP)
	return time.Since(start)
}

// noGateRefusals fails the test if a node's cloudd refused one of the
// cluster's own requests at its gate in front of microcluster (a heartbeat,
// a forwarded join, a client with more than one certificate): only forgers
// are refused, never the members.
func noGateRefusals(t testing.TB, nodes ...*harness.Node) {
	t.Helper()
	for _, nd := range nodes {
		if strings.Contains(nd.Log(), "refused a request from") {
			t.Fatalf("%s refused a request of the cluster's own:\n%s", nd.Name, nd.LogTail(30))
		}
	}
}

// oneSentence checks that a failure printed exactly one error line containing want.
func oneSentence(t testing.TB, r harness.Result, want string) {
	t.Helper()
	if r.Code == 0 {
		t.Fatalf("expected failure containing %q, got success: %s", want, r.Stdout)
	}
	var errLines []string
	for _, l := range strings.Split(strings.TrimSpace(r.Stderr), "\n") {
		if strings.HasPrefix(l, "Error: ") {
			errLines = append(errLines, l)
		}
	}
	if len(errLines) != 1 {
		t.Fatalf("expected one error line, got %d: %q", len(errLines), r.Stderr)
	}
	if !strings.Contains(errLines[0], want) {
		t.Fatalf("error %q does not contain %q", errLines[0], want)
	}
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

func filepathTemp() (string, error) { return os.MkdirTemp("", "cloudctl-tools-") }

// sealedInDatabases waits (a minute at most) until some file of the nodes'
// cluster database directories (the Raft log included, where every write
// stays) holds a sealed value, so that the check sees the rows, and fails
// at once if any file holds one of the secrets (description → value) in
// the clear.
func sealedInDatabases(t *testing.T, nodes []*harness.Node, secrets map[string]string) {
	t.Helper()
	harness.Eventually(t, time.Minute, "the sealed secrets in the cluster database files", func() error {
		sealed := false
		for _, nd := range nodes {
			err := filepath.WalkDir(filepath.Join(nd.StateDir, "database"), func(p string, e fs.DirEntry, err error) error {
				if err != nil || e.IsDir() {
					return err
				}
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				for what, v := range secrets {
					if bytes.Contains(b, []byte(v)) {
						t.Fatalf("%s holds %s in the clear", p, what)
					}
				}
				sealed = sealed || bytes.Contains(b, []byte("sealed1:"))
				return nil
			})
			if err != nil {
				return err
			}
		}
		if !sealed {
			return fmt.Errorf("no sealed value in the files yet")
		}
		return nil
	})
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
