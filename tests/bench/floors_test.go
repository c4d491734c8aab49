package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The engines' own start times, by hand in a namespace, as floors of the
// bootstrap with a role: what the role's engine costs with nothing of
// cloudd's around it.

// lxdFloor times LXD from its start on a fresh LXD_DIR to the first answer
// of GET /1.0 on its unix socket (3 runs): the same binary and arguments as
// the compute role, with cgroup2 mounted in the namespace's mount namespace
// first (`ip netns exec` mounts a /sys without it; docs/compute.md).
func (b *bench) lxdFloor() (Sample, error) {
	return b.floorRuns(3, func(nd *Node, dir string) (time.Duration, error) {
		sock := filepath.Join(dir, "unix.socket")
		hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			}}}
		t0 := time.Now()
		if err := nd.Start("sh", "-c", `mount -t cgroup2 none /sys/fs/cgroup && LXD_DIR="$0" exec lxd --group root --logfile "$0/lxd.log"`, dir); err != nil {
			return 0, err
		}
		_, err := waitFor(b.ctx, time.Minute, "LXD answers on its socket", func() error {
			if nd.Exited() {
				log, _ := os.ReadFile(filepath.Join(dir, "lxd.log"))
				return errStop{fmt.Errorf("lxd exited: %s%s", nd.Log(), log)}
			}
			resp, err := hc.Get("http://lxd/1.0")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET /1.0: %s", resp.Status)
			}
			return nil
		})
		hc.CloseIdleConnections()
		return time.Since(t0), err
	})
}

// floorRuns times runs of an engine started by hand on a fresh one-node
// lab: once gets the node and a directory of its own for each run, starts
// the engine and returns how long it took to be ready; every process of the
// node is killed after each run.
func (b *bench) floorRuns(runs int, once func(nd *Node, dir string) (time.Duration, error)) (Sample, error) {
	s := ms()
	c, err := b.lab.NewCluster(b.ctx, 1)
	defer c.Close()
	if err != nil {
		return s, err
	}
	nd := c.Node(1)
	for i := 0; i < runs; i++ {
		dir := filepath.Join(nd.StateDir, fmt.Sprintf("floor%d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return s, err
		}
		took, err := once(nd, dir)
		nd.PowerOff(b.ctx)
		if err != nil {
			return s, err
		}
		s.AddDur(took)
	}
	return s, nil
}

// cephMonFloor times one Ceph monitor made and started by hand (3 runs):
// `ceph-mon --mkfs` from a one-monitor monmap and a mon. keyring, then the
// monitor from its start to the state "leader" on its admin socket. cephx
// and msgr2 as the storage role has them; no manager, no OSD.
func (b *bench) cephMonFloor() (Sample, error) {
	return b.floorRuns(3, func(nd *Node, dir string) (time.Duration, error) {
		key, _, err := nd.Exec(b.ctx, nil, "ceph-authtool", "--gen-print-key")
		if err != nil {
			return 0, err
		}
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
			return 0, err
		}
		raw := make([]byte, 16)
		if _, err := rand.Read(raw); err != nil {
			return 0, err
		}
		h := hex.EncodeToString(raw)
		fsid := h[0:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:32]
		addr := fmt.Sprintf("[v2:%s:3300,v1:%s:6789]", nd.IP, nd.IP)
		asok := filepath.Join(dir, "mon.asok")
		conf := filepath.Join(dir, "ceph.conf")
		confText := strings.Join([]string{
			"[global]", "fsid = " + fsid, "mon_host = " + addr, "public_addr = " + nd.IP,
			"auth_cluster_required = cephx", "auth_service_required = cephx", "auth_client_required = cephx",
			"ms_mon_cluster_mode = secure", "ms_mon_service_mode = secure", "ms_mon_client_mode = secure",
			"mon_data_avail_warn = 5",
			"[mon]", "mon_data = " + filepath.Join(dir, "data"), "admin_socket = " + asok,
			"log_file = " + filepath.Join(dir, "mon.log"), "run_dir = " + dir, ""}, "\n")
		kr := filepath.Join(dir, "mon.keyring")
		monmap := filepath.Join(dir, "monmap")
		if err := os.WriteFile(conf, []byte(confText), 0o600); err != nil {
			return 0, err
		}
		if err := os.WriteFile(kr, []byte("[mon.]\n\tkey = "+strings.TrimSpace(key)+"\n\tcaps mon = \"allow *\"\n"), 0o600); err != nil {
			return 0, err
		}
		if _, _, err := nd.Exec(b.ctx, nil, "monmaptool", "--create", "--fsid", fsid, "--addv", "a", addr, monmap); err != nil {
			return 0, err
		}
		t0 := time.Now()
		if _, _, err := nd.Exec(b.ctx, nil, "ceph-mon", "-c", conf, "--mkfs", "-i", "a", "--monmap", monmap, "--keyring", kr); err != nil {
			return 0, err
		}
		if err := nd.Start("ceph-mon", "-c", conf, "-i", "a", "-f"); err != nil {
			return 0, err
		}
		_, err = waitFor(b.ctx, time.Minute, "the Ceph monitor leads", func() error {
			if nd.Exited() {
				log, _ := os.ReadFile(filepath.Join(dir, "mon.log"))
				return errStop{fmt.Errorf("ceph-mon exited: %s%s", nd.Log(), log)}
			}
			out, _, err := nd.Exec(b.ctx, nil, "ceph", "--admin-daemon", asok, "mon_status")
			if err != nil {
				return err
			}
			var st struct {
				State string `json:"state"`
			}
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				return fmt.Errorf("mon_status: %w", err)
			}
			if st.State != "leader" {
				return fmt.Errorf("state %q", st.State)
			}
			return nil
		})
		return time.Since(t0), err
	})
}
