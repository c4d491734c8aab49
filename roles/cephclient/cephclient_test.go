package cephclient

import (
	"context"
	"database/sql"
	"os/exec"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver/drivertest"
)

func newDB(t *testing.T) drivertest.DB { return drivertest.NewDB(t) }

func TestRecord(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	// No storage role registered: no table, no record, no error.
	if _, found, err := Get(ctx, db, LXD); err != nil || found {
		t.Fatalf("without the table: found %v, err %v", found, err)
	}
	if err := db.Transaction(ctx, Schema); err != nil {
		t.Fatal(err)
	}
	if _, found, err := Get(ctx, db, LXD); err != nil || found {
		t.Fatalf("empty table: found %v, err %v", found, err)
	}
	c := Client{Name: LXD, Purpose: "instances", Pool: "cloud-rbd", Key: "AQB=", FSID: "f", MonHost: "[v2:10.0.0.1:3300,v1:10.0.0.1:6789]", UpdatedAt: time.Now()}
	if err := Put(ctx, db, c); err != nil {
		t.Fatal(err)
	}
	c.Pool = "other"
	if err := Put(ctx, db, c); err != nil {
		t.Fatal(err)
	}
	got, found, err := Get(ctx, db, LXD)
	if err != nil || !found || got.Pool != "other" || got.Key != "AQB=" || got.MonHost != c.MonHost {
		t.Fatalf("got %+v %v %v", got, found, err)
	}
}

func TestFiles(t *testing.T) {
	c := Client{Name: LXD, Pool: "cloud-rbd", Key: "SECRET", FSID: "fsid-1", MonHost: "[v2:10.0.0.1:3300,v1:10.0.0.1:6789]"}
	conf := c.Conf("/state/compute/ceph/keyring")
	if strings.Contains(conf, "SECRET") {
		t.Fatal("the key is in ceph.conf")
	}
	for _, want := range []string{"fsid = fsid-1", "mon_host = [v2:10.0.0.1:3300,v1:10.0.0.1:6789]", "[client.lxd-remote]", "keyring = /state/compute/ceph/keyring"} {
		if !strings.Contains(conf, want) {
			t.Fatalf("conf lacks %q:\n%s", want, conf)
		}
	}
	if kr := c.Keyring(); kr != "[client.lxd-remote]\n\tkey = SECRET\n" {
		t.Fatalf("keyring %q", kr)
	}
	caps := Caps("cloud-rbd")
	if caps["mon"] != "profile rbd" || caps["osd"] != "profile rbd pool=cloud-rbd" || strings.Contains(caps["osd"]+caps["mon"]+caps["mgr"], "allow *") {
		t.Fatalf("caps %v", caps)
	}
}

func TestSealKeysAndRoles(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	if err := db.Transaction(ctx, Schema); err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]string{LXD: "AQclear", "other": "sealed1:already", "empty": ""} {
		if err := Put(ctx, db, Client{Name: name, Key: key, UpdatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	var sealed []string
	err := db.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return SealKeys(ctx, tx, func(name, key string) (string, error) {
			sealed = append(sealed, name)
			return "sealed1:" + SealRow(name) + ":" + key, nil
		})
	})
	if err != nil || len(sealed) != 1 || sealed[0] != LXD {
		t.Fatalf("sealed %v: %v", sealed, err)
	}
	if c, _, _ := Get(ctx, db, LXD); c.Key != "sealed1:ceph_client:lxd-remote:AQclear" {
		t.Fatalf("key %q", c.Key)
	}
	if c, _, _ := Get(ctx, db, "other"); c.Key != "sealed1:already" {
		t.Fatalf("a sealed key was sealed again: %q", c.Key)
	}
	if RoleOf(LXD) != roles.Compute || RoleOf("admin") != "" {
		t.Fatal("RoleOf")
	}
	if !ValidKey("AQAAAAAAAAAAABAABwcHBwcHBwcHBwcHBwcHBw==") || ValidKey("AQ==\n[client.admin]") || ValidKey("sealed1:x") {
		t.Fatal("ValidKey")
	}
}

// TestNoCephLibrary: this package is the seam between the storage role and
// its client roles; it links no Ceph library, and the compute role links
// neither the storage role nor go-ceph.
func TestNoCephLibrary(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go tool")
	}
	for pkg, forbidden := range map[string][]string{
		"github.com/cloudctl/cloudctl/roles/cephclient": {"github.com/ceph/go-ceph/", "github.com/cloudctl/cloudctl/roles/storage", "github.com/cloudctl/cloudctl/roles/compute"},
		"github.com/cloudctl/cloudctl/roles/compute":    {"github.com/ceph/go-ceph/", "github.com/cloudctl/cloudctl/roles/storage"},
		"github.com/cloudctl/cloudctl/roles/storage":    {"github.com/cloudctl/cloudctl/roles/compute"},
	} {
		out, err := exec.CommandContext(t.Context(), "go", "list", "-tags", "pacific libsqlite3", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v: %s", err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if strings.HasPrefix(dep, f) {
					t.Errorf("%s links %s", pkg, dep)
				}
			}
		}
	}
}
