package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat (100 on Linux).
const clockTicks = 100

// Proc is one process seen in a node's namespace.
type Proc struct {
	Pid    int
	Comm   string
	Ticks  uint64 // utime+stime
	RSSKiB int
}

// ReadProc reads a process's name, CPU time and resident memory.
func ReadProc(pid int) (Proc, error) {
	p := Proc{Pid: pid}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return p, fmt.Errorf("read comm of %d: %w", pid, err)
	}
	p.Comm = strings.TrimSpace(string(comm))
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return p, fmt.Errorf("stat of %d: no command field", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return p, fmt.Errorf("stat of %d: %d fields", pid, len(f))
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	p.Ticks = ut + st
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return p, fmt.Errorf("read status of %d: %w", pid, err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			if fl := strings.Fields(l); len(fl) >= 2 {
				p.RSSKiB, _ = strconv.Atoi(fl[1])
			}
		}
	}
	return p, nil
}

// Procs reads every process in the node's namespace, by pid.
func (nd *Node) Procs(ctx context.Context) map[int]Proc {
	out := map[int]Proc{}
	for _, pid := range nd.Pids(ctx) {
		if p, err := ReadProc(pid); err == nil {
			out[pid] = p
		}
	}
	return out
}
