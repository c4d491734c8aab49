package cephclient

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

type sqliteDB struct{ db *sql.DB }

func (s sqliteDB) Transaction(ctx context.Context, f func(context.Context, *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(ctx, tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func newDB(t *testing.T) sqliteDB {
	db, err := sql.Open("sqlite3", filepath.Join(t.TempDir(), "cluster.db"))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return sqliteDB{db: db}
}

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
