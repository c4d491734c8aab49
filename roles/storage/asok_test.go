package storage

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudctl/cloudctl/api"
)

// fakeAdminSocket answers every connection at path with answer (after
// checking the command is NUL-terminated JSON naming prefix), or with a
// length of claim bytes when claim is not zero.
func fakeAdminSocket(t *testing.T, path, prefix string, answer []byte, claim uint32) {
	t.Helper()
	serveUnix(t, path, func(c net.Conn) {
		cmd, err := bufio.NewReader(c).ReadBytes(0)
		if err != nil {
			return
		}
		var m map[string]string
		if json.Unmarshal(cmd[:len(cmd)-1], &m) != nil || m["prefix"] != prefix {
			return // the client reads EOF
		}
		n := uint32(len(answer))
		if claim != 0 {
			n = claim
		}
		_ = binary.Write(c, binary.BigEndian, n)
		_, _ = c.Write(answer)
	})
}

// serveUnix listens at path until the test ends and hands each connection
// to handle, closing it when handle returns.
func serveUnix(t *testing.T, path string, handle func(net.Conn)) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

func monStatusJSON(name, state string, mons ...string) []byte {
	var ms struct {
		Name   string `json:"name"`
		State  string `json:"state"`
		MonMap struct {
			Mons []map[string]string `json:"mons"`
		} `json:"monmap"`
	}
	ms.Name, ms.State = name, state
	for _, m := range mons {
		ms.MonMap.Mons = append(ms.MonMap.Mons, map[string]string{"name": m})
	}
	b, _ := json.Marshal(ms)
	return b
}

func TestAdminSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "asok") // a unix socket path must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l := layout{dir: dir}
	if err := os.MkdirAll(l.run(), 0o700); err != nil {
		t.Fatal(err)
	}
	fakeAdminSocket(t, filepath.Join(l.run(), "ceph-mon.node1.asok"), "mon_status", monStatusJSON("node1", "electing", "node1", "node2", "node3"), 0)
	ms, err := localMonStatus(context.Background(), l, "node1")
	if err != nil || ms.State != "electing" || len(ms.MonMap.Mons) != 3 {
		t.Fatalf("mon_status: %+v, %v", ms, err)
	}
	// No socket: an error, not a state.
	if _, err := localMonStatus(context.Background(), l, "node2"); err == nil {
		t.Fatal("a monitor with no admin socket answered")
	}
	// An answer claiming more than the limit is refused before it is read.
	fakeAdminSocket(t, filepath.Join(l.run(), "ceph-mon.big.asok"), "mon_status", nil, asokMax+1)
	if _, err := localMonStatus(context.Background(), l, "big"); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("oversized answer: %v", err)
	}

	// A socket that takes the command and never answers: an error (the
	// read has its own deadline), not a status that hangs.
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	serveUnix(t, filepath.Join(l.run(), "ceph-mon.mute.asok"), func(net.Conn) { <-done })
	if _, err := localMonStatus(context.Background(), l, "mute"); err == nil {
		t.Fatal("a monitor that never answers answered")
	}

	// explainMonitors replaces the timeout with the election, only on a
	// node that holds a monitor.
	st := state{Monitors: []monitorRow{{Node: "node1"}}}
	layer := api.Layer{Health: api.HealthError, Reason: "the Ceph monitors do not answer: ceph mon dump: context deadline exceeded"}
	explainMonitors(context.Background(), l, "node1", st, &layer)
	if layer.Health != api.HealthWarning || !strings.Contains(layer.Reason, "electing a leader") || !strings.Contains(layer.Reason, "2 of 3") || !strings.Contains(layer.Reason, "(the Ceph monitors do not answer: ceph mon dump") {
		t.Fatalf("during an election: %+v", layer)
	}
	layer = api.Layer{Health: api.HealthError, Reason: "x"}
	explainMonitors(context.Background(), l, "node9", st, &layer)
	if layer.Reason != "x" {
		t.Fatalf("a node with no monitor changed the reason: %+v", layer)
	}
}

func TestMonitorsUnanswered(t *testing.T) {
	ms := func(state string) monStatus {
		var m monStatus
		_ = json.Unmarshal(monStatusJSON("node1", state, "node1", "node2", "node3"), &m)
		return m
	}
	for _, c := range []struct {
		state, health, want string
		ok                  bool
	}{
		{"electing", api.HealthWarning, "electing a leader", true},
		{"probing", api.HealthError, "check the network", true},
		{"synchronizing", api.HealthWarning, "catching up", true},
		{"leader", "", "", false},
		{"peon", "", "", false},
	} {
		h, why, ok := monitorsUnanswered(ms(c.state))
		if ok != c.ok || h != c.health || !strings.Contains(why, c.want) {
			t.Errorf("%s: %q %q %v", c.state, h, why, ok)
		}
	}
}
