package storage

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"time"

	"github.com/cloudctl/cloudctl/api"
)

// asokMax bounds an admin socket's answer; mon_status is a few KiB.
const asokMax = 1 << 20

// adminSocket asks a local Ceph daemon one command over its admin socket
// and returns the answer. The socket answers without a monitor quorum, which
// is what status needs it for; the commands asked are reads.
//
// The protocol is Ceph's: the command as JSON followed by a NUL byte; the
// answer is a 4-byte big-endian length, then that many bytes.
func adminSocket(ctx context.Context, path, prefix string) ([]byte, error) {
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	defer c.Close()
	deadline := time.Now().Add(2 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	cmd, err := json.Marshal(map[string]string{"prefix": prefix, "format": "json"})
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(append(cmd, 0)); err != nil {
		return nil, fmt.Errorf("admin socket %s: send %s: %w", path, prefix, err)
	}
	var n uint32
	if err := binary.Read(c, binary.BigEndian, &n); err != nil {
		return nil, fmt.Errorf("admin socket %s: read the answer to %s: %w", path, prefix, err)
	}
	if n > asokMax {
		return nil, fmt.Errorf("admin socket %s: the answer to %s is %d bytes, more than the %d allowed", path, prefix, n, asokMax)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		return nil, fmt.Errorf("admin socket %s: read the answer to %s: %w", path, prefix, err)
	}
	return buf, nil
}

// monStatus is the part of a monitor's mon_status that status reads.
type monStatus struct {
	Name          string `json:"name"`
	State         string `json:"state"`
	ElectionEpoch int    `json:"election_epoch"`
	Quorum        []int  `json:"quorum"`
	MonMap        struct {
		Mons []struct {
			Name string `json:"name"`
		} `json:"mons"`
	} `json:"monmap"`
}

// localMonStatus reads the mon_status of this node's own monitor.
func localMonStatus(ctx context.Context, l layout, node string) (monStatus, error) {
	var ms monStatus
	b, err := adminSocket(ctx, filepath.Join(l.run(), "ceph-mon."+node+".asok"), "mon_status")
	if err != nil {
		return ms, err
	}
	if err := json.Unmarshal(b, &ms); err != nil {
		return ms, fmt.Errorf("the mon_status of the monitor %s: %w", node, err)
	}
	if ms.State == "" {
		return ms, errors.New("the mon_status of the monitor " + node + " names no state")
	}
	return ms, nil
}

// monitorsUnanswered explains monitors that do not answer a command from
// what this node's own monitor says of itself: an election under way is
// said as such, with when to look again, before the command's error. ok is false when the monitor's state explains nothing (it is in
// quorum: the command failed for another reason).
func monitorsUnanswered(ms monStatus) (health, reason string, ok bool) {
	total := len(ms.MonMap.Mons)
	need := total/2 + 1
	switch ms.State {
	case "electing":
		return api.HealthWarning, fmt.Sprintf("the Ceph monitors are electing a leader (the monitor %s is electing, %d of %d monitors needed): storage waits until they agree, usually within seconds after a monitor's node stops; look again shortly", ms.Name, need, total), true
	case "probing":
		return api.HealthError, fmt.Sprintf("this node's Ceph monitor %s is not in a quorum: it is looking for the others and needs %d of the %d monitors to answer; check the network to the other monitors' nodes and start those that are down; only if they are lost for good, run `cloudctl cluster recover` here", ms.Name, need, total), true
	case "synchronizing":
		return api.HealthWarning, fmt.Sprintf("the Ceph monitor %s is catching up with the others (synchronizing) before it rejoins the quorum; look again shortly", ms.Name), true
	}
	return "", "", false
}

// explainMonitors replaces a failed monitor command's reason with what this
// node's monitor says of itself, when it has one and the monitor answers.
func explainMonitors(ctx context.Context, l layout, node string, st state, layer *api.Layer) {
	if _, ok := st.monitor(node); !ok {
		return
	}
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ms, err := localMonStatus(actx, l, node)
	if err != nil {
		return
	}
	if h, why, ok := monitorsUnanswered(ms); ok {
		layer.Health, layer.Reason = h, why+" ("+layer.Reason+")"
	}
}

// reserve is ctx with its deadline, if it has one, brought forward by d
// (by half the time left when that is less than 2d), so that the caller
// keeps that time for what comes after.
func reserve(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	if left := time.Until(dl); left < 2*d {
		d = left / 2
	}
	return context.WithDeadline(ctx, dl.Add(-d))
}
