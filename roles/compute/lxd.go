package compute

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	lxd "github.com/canonical/lxd/client"
	lxdapi "github.com/canonical/lxd/shared/api"

	"github.com/cloudctl/cloudctl/supervisor"
)

// serviceName is LXD's name under cloudd's supervisor.
const serviceName = "lxd"

// paths are the driver's files. LXD_DIR and the pool are links below the
// role's directory to real directories beside the state directory
// (<state>.compute/): cloudd's cluster library watches the whole state
// directory tree with inotify at start, which must not descend into LXD's
// tree (container root filesystems, and links that dangle until LXD has
// mounted its pools, which make that start fail). The pool is not inside
// LXD_DIR: LXD refuses a dir pool whose path starts with LXD_DIR.
type paths struct {
	lxdDir, pool, log string
	// cephDir holds the remote pool's client ceph.conf (CEPH_CONF of LXD)
	// and the LXD user's keyring (0600).
	cephDir, cephConf, cephKeyring string
	// data is the real directory holding lxd/ and pool-local/.
	data string
	// evacuated marks a member this node evacuated to leave the role: only
	// such a member is restored when the node has the role again (one a
	// person evacuated for maintenance stays as it is).
	evacuated string
}

func pathsIn(dir string) paths {
	state := filepath.Dir(filepath.Clean(dir))
	ceph := filepath.Join(dir, "ceph")
	return paths{lxdDir: filepath.Join(dir, "lxd"), pool: filepath.Join(dir, "pool-"+PoolName), log: filepath.Join(dir, "lxd.log"),
		data:    filepath.Join(filepath.Dir(state), filepath.Base(state)+"."+filepath.Base(dir)),
		cephDir: ceph, cephConf: filepath.Join(ceph, "ceph.conf"), cephKeyring: filepath.Join(ceph, "keyring"),
		evacuated: filepath.Join(dir, "evacuated-to-leave")}
}

// ensureDirs creates the real directories and the links to them.
func (p paths) ensureDirs() error {
	if err := os.MkdirAll(filepath.Dir(p.lxdDir), 0o711); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(p.lxdDir), err)
	}
	for _, l := range []string{p.lxdDir, p.pool} {
		real := filepath.Join(p.data, filepath.Base(l))
		if err := os.MkdirAll(real, 0o711); err != nil {
			return fmt.Errorf("create %s: %w", real, err)
		}
		if fi, err := os.Lstat(l); err == nil {
			if fi.Mode()&os.ModeSymlink == 0 {
				return fmt.Errorf("%s is a directory, not a link to %s: move it there", l, real)
			}
			continue
		}
		if err := os.Symlink(real, l); err != nil {
			return fmt.Errorf("link %s to %s: %w", l, real, err)
		}
	}
	return nil
}

func (p paths) socket() string { return filepath.Join(p.lxdDir, "unix.socket") }

// cgroupMounted reports whether a cgroup hierarchy is mounted at or below
// /sys/fs/cgroup in this process's mount namespace, from mountinfo's text.
func cgroupMounted(mountinfo string) bool {
	sc := bufio.NewScanner(strings.NewReader(mountinfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// mount point is field 5; the filesystem type follows the " - " separator.
		if len(f) < 7 {
			continue
		}
		mp := f[4]
		if mp != "/sys/fs/cgroup" && !strings.HasPrefix(mp, "/sys/fs/cgroup/") {
			continue
		}
		for i := 6; i < len(f)-1; i++ {
			if f[i] == "-" {
				if t := f[i+1]; t == "cgroup" || t == "cgroup2" {
					return true
				}
				break
			}
		}
	}
	return false
}

// ensureCgroup mounts the unified cgroup hierarchy at /sys/fs/cgroup when
// none is mounted in cloudd's mount namespace. LXD, cloudd's child, shares
// that namespace. `ip netns exec` (how nodes run in tests, and how a
// namespaced cloudd is started) mounts a fresh /sys without cgroups, and
// LXD then cannot read the host's cpuset and fails to start containers. On a
// normal host the hierarchy is mounted and nothing is done.
func ensureCgroup() (bool, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("read mountinfo: %w", err)
	}
	if cgroupMounted(string(b)) {
		return false, nil
	}
	if err := syscall.Mount("cgroup2", "/sys/fs/cgroup", "cgroup2", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return false, fmt.Errorf("mount cgroup2 on /sys/fs/cgroup for LXD: %w", err)
	}
	return true, nil
}

// connect opens LXD's unix socket. Every request of the returned client
// ends with ctx: a hung LXD (waiting for its cluster database) cannot hold
// a status request or a reconcile round past its deadline.
func connect(ctx context.Context, p paths) (lxd.InstanceServer, error) {
	c, err := lxd.ConnectLXDUnixWithContext(ctx, p.socket(), &lxd.ConnectionArgs{SkipGetServer: true})
	if err != nil {
		return nil, fmt.Errorf("connect to LXD at %s: %w", p.socket(), err)
	}
	return c, nil
}

// ready reports whether LXD finished starting (its /internal/ready answers).
func ready(ctx context.Context, p paths) (lxd.InstanceServer, error) {
	c, err := connect(ctx, p)
	if err != nil {
		return nil, err
	}
	if _, _, err := c.RawQuery(http.MethodGet, "/internal/ready", nil, ""); err != nil {
		return nil, fmt.Errorf("LXD not ready: %w", err)
	}
	return c, nil
}

// waitReady waits until LXD is ready or wctx ends; the client it returns
// lives as long as ctx.
func waitReady(ctx, wctx context.Context, p paths, sup *supervisor.Supervisor) (lxd.InstanceServer, error) {
	var last error
	for {
		_, err := ready(wctx, p)
		if err == nil {
			return connect(ctx, p)
		}
		last = err
		if _, ok := sup.Status(serviceName); !ok {
			return nil, fmt.Errorf("LXD exited while starting (see %s): %w", p.log, last)
		}
		select {
		case <-wctx.Done():
			return nil, fmt.Errorf("LXD did not become ready (see %s): %w", p.log, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// rssKiB is the resident memory of pid, from /proc.
func rssKiB(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n
			}
		}
	}
	return 0
}

// bounded is ctx limited to d; its cancel runs when ctx ends or d passes
// (a timer), so callers need not keep it.
func bounded(ctx context.Context, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(ctx, d)
	go func() { <-c.Done(); cancel() }()
	return c
}

// wait waits for an LXD operation with ctx.
func wait(ctx context.Context, op lxd.Operation, what string) error {
	if err := op.WaitContext(ctx); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// isNotFound reports an LXD 404.
func isNotFound(err error) bool {
	return lxdapi.StatusErrorCheck(err, http.StatusNotFound)
}

var errNotClustered = errors.New("LXD is not clustered")
