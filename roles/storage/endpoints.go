package storage

import (
	"context"
	"net/http"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// Endpoints implements driver.Driver: GET /1.0/storage/disks lists the
// OSDs, with the node and plan entry each was made from.
func (d *Driver) Endpoints() []driver.Endpoint {
	return []driver.Endpoint{{Path: "storage/disks", Method: http.MethodGet, Handler: d.listDisks}}
}

func (d *Driver) listDisks(ctx context.Context, env *driver.Env, _ driver.Request) (any, error) {
	st, err := readState(ctx, env.DB)
	if err != nil {
		return nil, driver.Errorf(http.StatusInternalServerError, "%v", err)
	}
	out := []api.StorageOSD{}
	var osds map[int]osdState
	if st.Secrets.ok() {
		if conn, err := d.conn(ctx, st); err == nil {
			if osds, err = conn.osdStates(ctx); err != nil {
				d.conns.drop(conn)
			}
		}
	}
	for _, o := range st.OSDs {
		so := api.StorageOSD{ID: o.ID, Node: o.Node, Path: o.Path, FileBacked: o.FileBacked, SizeBytes: o.SizeBytes, State: o.State}
		if s, ok := osds[o.ID]; ok {
			so.Up, so.In = s.Up, s.In
		}
		if o.FileBacked {
			so.Note = FileBackedNote
		}
		out = append(out, so)
	}
	return out, nil
}
