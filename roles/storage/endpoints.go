package storage

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/cephclient"
	"github.com/cloudctl/cloudctl/roles/driver"
	splan "github.com/cloudctl/cloudctl/roles/storage/plan"
)

// Endpoints implements driver.Driver: GET /1.0/storage/disks lists the
// OSDs, with the node and plan entry each was made from; the others serve
// the storage seal key and what only its holders can open (seal.go).
func (d *Driver) Endpoints() []driver.Endpoint {
	return []driver.Endpoint{
		{Path: disksPath, Method: http.MethodGet, Handler: d.listDisks},
		{Path: disksPath, Method: http.MethodPost, Handler: d.addDisk, Changes: true},
		{Path: disksPath, Method: http.MethodDelete, Handler: d.removeDisk, Changes: true},
		{Path: guardPath, Method: http.MethodPost, Handler: d.handleGuard, Timeout: driver.GuardTimeout},
		{Path: SealKeyPath, Method: http.MethodGet, Handler: d.handleSealKey},
		{Path: sealHolderPath, Method: http.MethodGet, Handler: d.handleSealHolder, Light: true},
		{Path: layerPath, Method: http.MethodGet, Handler: d.handleLayer},
		{Path: cephclient.KeyPath + "/{name}", Method: http.MethodGet, Handler: d.handleClientKey},
	}
}

// disksPath lists, adds and removes OSD disks.
const disksPath = "storage/disks"

// addDisk records a disk for a storage node; that node's next round makes
// the OSD. A disk of the node answering is checked at once, so a refused
// disk is reported here and nothing is recorded.
func (d *Driver) addDisk(ctx context.Context, env *driver.Env, req driver.Request) (any, error) {
	var in api.StorageDiskAdd
	if req.Body == nil {
		return nil, driver.Errorf(http.StatusBadRequest, "storage disk add: the request has no body; send {\"node\": ..., \"path\": ...}")
	}
	if err := driver.DecodeBody(req, &in); err != nil {
		return nil, err
	}
	if in.Node == "" || in.Path == "" {
		return nil, driver.Errorf(http.StatusBadRequest, "storage disk add: name the node and the disk: send {\"node\": ..., \"path\": ...}")
	}
	n, ok := env.Node(in.Node)
	switch {
	case !ok:
		return nil, driver.Errorf(http.StatusNotFound, "node %q is not a member of this cluster; `cloudctl cluster list` shows the members", in.Node)
	case !n.Has(roles.Storage):
		return nil, driver.Errorf(http.StatusBadRequest, "node %s has no storage role; add it first with `cloudctl role add %s storage`", in.Node, in.Node)
	}
	_, file, err := splan.ParseFileDisk(in.Path)
	switch {
	case err != nil:
		return nil, driver.Errorf(http.StatusBadRequest, "%v", err)
	case !file && !strings.HasPrefix(in.Path, "/dev/"):
		return nil, driver.Errorf(http.StatusBadRequest, "invalid disk path %q: name a disk by its /dev path (such as /dev/sdb), or loop:SIZE (such as loop:8GiB) for a file-backed OSD", in.Path)
	}
	st, err := readState(ctx, env.DB)
	if err != nil {
		return nil, err
	}
	if !file {
		for _, c := range st.disksOf(n) {
			if c.Path == in.Path {
				return nil, driver.Errorf(http.StatusConflict, "disk %s of %s is already given to storage; `cloudctl storage disk list` shows the OSDs", in.Path, in.Node)
			}
		}
		if n.Name == env.Local.Name {
			env.Local.Disks = []api.DiskChoice{{Path: in.Path, Wipe: in.Wipe}}
			if _, err := d.checkDisks(ctx, env, state{}); err != nil {
				return nil, driver.Errorf(http.StatusBadRequest, "%v", err)
			}
		}
	}
	if err := addDisk(ctx, env.DB, in.Node, in.Path, in.Wipe, env.Now()); err != nil {
		return nil, err
	}
	return in, nil
}

// listDisks lists the OSDs, up and in as Ceph says. A node that holds no
// storage seal key asks a node that runs Ceph for the list, when the
// request came on its local socket; failing that, or asked by a member, it
// lists them without their up and in.
func (d *Driver) listDisks(ctx context.Context, env *driver.Env, req driver.Request) (any, error) {
	st, err := readState(ctx, env.DB)
	if err != nil {
		return nil, driver.Errorf(http.StatusInternalServerError, "%v", err)
	}
	out := []api.StorageOSD{}
	var osds map[int]osdState
	if st.created() {
		err := openHere(env, &st)
		if errors.Is(err, errNoKey) && req.Local && env.Peers != nil {
			for _, n := range d.keyHolders(env) {
				if !d.AppliesTo(env, n) {
					continue
				}
				var theirs []api.StorageOSD
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := env.Peers.Get(pctx, n.Name, disksPath, &theirs)
				cancel()
				if err == nil {
					return theirs, nil
				}
			}
		}
		if err == nil {
			if conn, err := d.conn(ctx, st); err == nil {
				if osds, err = conn.osdStates(ctx); err != nil {
					d.conns.drop(conn)
				}
			}
		}
	}
	for _, o := range st.OSDs {
		if o.State == osdRemoved {
			continue
		}
		so := api.StorageOSD{ID: o.ID, Node: o.Node, Path: o.Path, FileBacked: o.FileBacked, SizeBytes: o.SizeBytes, State: o.State}
		if s, ok := osds[o.ID]; ok {
			so.Up, so.In = s.Up, s.In
		}
		if o.FileBacked {
			so.Note = splan.FileBackedNote
		}
		out = append(out, so)
	}
	return out, nil
}

// removeDisk takes the OSD made from a disk entry away: it is refused when
// it would leave a pool below its size or lose its last copy (unless
// forced); otherwise the OSD is marked out and its node purges it once the
// data moved (the disk entry stays taken, so it is not made again).
// Query: node, path, force.
func (d *Driver) removeDisk(ctx context.Context, env *driver.Env, req driver.Request) (any, error) {
	node, path, force := req.Query.Get("node"), req.Query.Get("path"), req.Query.Get("force") == "1"
	if _, ok := env.Node(node); !ok {
		return nil, driver.Errorf(http.StatusNotFound, "node %q is not a member of this cluster; `cloudctl cluster list` shows the members", node)
	}
	st, err := readState(ctx, env.DB)
	if err != nil {
		return nil, err
	}
	var target *osdRow
	left := 0
	for _, o := range st.osdsOf(node) {
		if o.State != osdReady {
			continue
		}
		left++
		if o.Path == path && (target == nil || o.Slot > target.Slot) {
			o := o
			target = &o
		}
	}
	if target == nil {
		return nil, driver.Errorf(http.StatusNotFound, "node %s has no OSD on disk %s; `cloudctl storage disk list` shows the OSDs", node, path)
	}
	if err := openHere(env, &st); errors.Is(err, errNoKey) {
		return nil, driver.Errorf(http.StatusConflict, "%s holds no key to the Ceph secrets, so it cannot remove the OSD on %s: run this on %s", env.Local.Name, path, d.cephNodes(env))
	} else if err != nil {
		return nil, err
	}
	conn, err := d.conn(ctx, st)
	if err != nil {
		return nil, driver.Errorf(http.StatusServiceUnavailable, "cannot remove the OSD on %s: %v; try again when the monitors answer", path, err)
	}
	if left == 1 && !force {
		uses, err := poolUses(ctx, conn)
		if err != nil {
			d.conns.drop(conn)
			return nil, driver.Errorf(http.StatusServiceUnavailable, "cannot check what removing the OSD on %s would lose: %v", path, err)
		}
		if err := GuardRemoval(node, st.hostsWithOSDs(env), uses); err != nil {
			return nil, driver.Errorf(http.StatusConflict, "%s (the OSD on %s is the last one of %s)", err.Error(), path, node)
		}
	}
	if err := conn.mon(ctx, map[string]any{"prefix": "osd out", "ids": []string{strconv.Itoa(target.ID)}}, nil, nil); err != nil {
		d.conns.drop(conn)
		return nil, driver.Errorf(http.StatusServiceUnavailable, "mark osd.%d out: %v", target.ID, err)
	}
	if err := setOSDState(ctx, env.DB, target.ID, osdRemoving); err != nil {
		return nil, err
	}
	return api.StorageOSD{ID: target.ID, Node: node, Path: path, FileBacked: target.FileBacked, State: osdRemoving}, nil
}
