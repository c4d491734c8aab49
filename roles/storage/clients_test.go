package storage

import (
	"strings"
	"testing"

	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/cephclient"
	"github.com/cloudctl/cloudctl/roles/driver"
)

func TestWantedClients(t *testing.T) {
	storageOnly := driver.Node{Name: "node1", Roles: []roles.Role{roles.Storage}}
	env := testEnv(t, nil, storageOnly)
	if w := wantedClients(env); len(w) != 0 {
		t.Fatalf("no compute node, yet clients %+v", w)
	}
	both := driver.Node{Name: "node1", Roles: []roles.Role{roles.Storage, roles.Compute}}
	env = testEnv(t, nil, both)
	w := wantedClients(env)
	if len(w) != 1 || w[0].Name != cephclient.LXD || w[0].Pool != env.Manifest.Storage.Pools["instances"] || w[0].Pool == "" {
		t.Fatalf("clients %+v", w)
	}
	want := w[0]
	want.FSID, want.MonHost = "f", "[v2:10.0.0.1:3300,v1:10.0.0.1:6789]"
	rec := want
	rec.Key = "k"
	if !clientUpToDate(rec, true, want) {
		t.Fatal("same record not up to date")
	}
	for name, mod := range map[string]func(*cephclient.Client){
		"no key":       func(c *cephclient.Client) { c.Key = "" },
		"new monitors": func(c *cephclient.Client) { c.MonHost += ",[v2:10.0.0.2:3300,v1:10.0.0.2:6789]" },
		"other pool":   func(c *cephclient.Client) { c.Pool = "x" },
	} {
		r := rec
		mod(&r)
		if clientUpToDate(r, true, want) {
			t.Errorf("%s: judged up to date", name)
		}
	}
	if clientUpToDate(rec, false, want) {
		t.Fatal("missing record judged up to date")
	}
	if got := capsArgs(cephclient.Caps("p")); strings.Join(got, "|") != "mgr|profile rbd pool=p|mon|profile rbd|osd|profile rbd pool=p" {
		t.Fatalf("caps args %q", got)
	}
}
