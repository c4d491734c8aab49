package preflight

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrWrongAnswer means a port answered, but not with the preflight echo:
// something else listens there.
var ErrWrongAnswer = errors.New("not a cloudctl preflight listener")

// Deadlines of the probes. A dial is answered by the kernel, so a few
// seconds without an answer mean the packets are dropped. A full-size
// exchange gets more, for machines under load; each try of the MTU search
// (after a full-size exchange failed) gets less.
const (
	DialTimeout     = 3 * time.Second
	ExchangeTimeout = 15 * time.Second
	SearchTimeout   = 5 * time.Second
)

const (
	helloPrefix = "CLOUDCTL-PREFLIGHT "
	okPrefix    = "CLOUDCTL-PREFLIGHT-OK "
	// MinMSS is the smallest TCP segment every IPv4 path carries: the first
	// exchange LargestPacket tries, which decides whether the problem is the
	// packet size at all, so callers give it their full exchange timeout
	// (a loaded member answers slowly, which is not a small MTU).
	MinMSS = 536
	// tcpIPHeaders is what an IPv4 TCP packet adds to its segment.
	tcpIPHeaders = 40
)

// NewNonce returns a random nonce for the joiner's listeners.
func NewNonce() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make a nonce: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Pad returns n bytes of padding for a large exchange.
func Pad(n int) string { return strings.Repeat("x", n) }

// Bind opens port p on this machine (every address) and returns the open
// listener: the port is free. TCP listeners are returned as net.Listener so
// that Serve can answer members dialing back. VRRP is not a port: ok is
// false and nothing is opened.
func Bind(p PortSpec) (c io.Closer, ok bool, err error) {
	addr := ":" + strconv.Itoa(p.Port)
	switch p.Proto {
	case "tcp":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, true, fmt.Errorf("listen on %s: %w", p, err)
		}
		return ln, true, nil
	case "udp":
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, true, fmt.Errorf("listen on %s: %w", p, err)
		}
		return pc, true, nil
	}
	return nil, false, nil
}

// Echo answers members dialing back to a joiner: each connection says the
// nonce and sends a payload; Echo answers with the same payload, so the
// exchange also carries full-size packets both ways. Close stops it.
type Echo struct {
	nonce string
	wg    sync.WaitGroup
	mu    sync.Mutex
	lns   []net.Listener
}

// NewEcho returns an echo server for the nonce.
func NewEcho(nonce string) *Echo { return &Echo{nonce: nonce} }

// Serve answers on ln until Close.
func (e *Echo) Serve(ln net.Listener) {
	e.mu.Lock()
	e.lns = append(e.lns, ln)
	e.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				e.answer(conn)
			}()
		}
	}()
}

func (e *Echo) answer(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(ExchangeTimeout))
	r := bufio.NewReaderSize(conn, 256)
	line, err := readLine(r)
	if err != nil {
		return
	}
	nonce, size, ok := parseLine(line, helloPrefix)
	if !ok || nonce != e.nonce || size > PadSize {
		return
	}
	if _, err := io.CopyN(io.Discard, r, int64(size)); err != nil {
		return
	}
	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "%s%s %d\n", okPrefix, e.nonce, size)
	_, _ = io.CopyN(w, zeros{}, int64(size))
	_ = w.Flush()
}

// Close stops every listener and waits for the answers in flight.
func (e *Echo) Close() {
	e.mu.Lock()
	for _, ln := range e.lns {
		_ = ln.Close()
	}
	e.lns = nil
	e.mu.Unlock()
	e.wg.Wait()
}

// readLine reads one short line (at most 200 bytes).
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for len(b) < 200 {
		c, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		if c == '\n' {
			return string(b), nil
		}
		b = append(b, c)
	}
	return "", ErrWrongAnswer
}

func parseLine(line, prefix string) (string, int, bool) {
	rest, ok := strings.CutPrefix(line, prefix)
	if !ok {
		return "", 0, false
	}
	f := strings.Fields(rest)
	if len(f) != 2 {
		return "", 0, false
	}
	n, err := strconv.Atoi(f[1])
	if err != nil || n < 0 {
		return "", 0, false
	}
	return f[0], n, true
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// Dialer is a TCP dialer that clamps the TCP segment size to mss (0: the
// interface's) and binds the local address to local (nil: any).
func Dialer(mss int, local net.Addr) *net.Dialer {
	d := &net.Dialer{Timeout: DialTimeout, LocalAddr: local}
	if mss > 0 {
		d.Control = func(network, address string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, mss)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	return d
}

// Dial checks that addr accepts a TCP connection, and closes it.
func Dial(ctx context.Context, addr string) error {
	conn, err := Dialer(0, nil).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// DialBack dials a joiner's echo listener at addr, says the nonce and
// exchanges size bytes each way, with segments clamped to mss (0: none),
// within timeout.
func DialBack(ctx context.Context, addr, nonce string, size, mss int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := Dialer(mss, nil).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "%s%s %d\n", helloPrefix, nonce, size)
	if _, err := io.CopyN(w, zeros{}, int64(size)); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	r := bufio.NewReaderSize(conn, 256)
	line, err := readLine(r)
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return fmt.Errorf("%w: the connection was closed without an answer", ErrWrongAnswer)
	}
	if err != nil {
		return err
	}
	got, n, ok := parseLine(line, okPrefix)
	if !ok || got != nonce || n != size {
		return ErrWrongAnswer
	}
	if _, err := io.CopyN(io.Discard, r, int64(size)); err != nil {
		return err
	}
	return nil
}

// LargestPacket looks for the largest packet that passes a path on which a
// full-size exchange failed: exchange(ctx, mss) repeats that exchange with
// segments clamped to mss. It returns 0 when even the smallest segments do
// not pass (not an MTU problem), else the largest packet size seen to pass,
// to within 64 bytes (the search makes at most five tries).
func LargestPacket(ctx context.Context, mtu int, exchange func(ctx context.Context, mss int) error) int {
	if exchange(ctx, MinMSS) != nil {
		return 0
	}
	lo, hi := MinMSS, mtu-tcpIPHeaders
	for hi-lo > 64 && ctx.Err() == nil {
		mid := (lo + hi) / 2
		if exchange(ctx, mid) == nil {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo + tcpIPHeaders
}

// InterfaceMTU is the MTU of the interface that holds ip (1500 when none does).
func InterfaceMTU(ip string) int {
	want := net.ParseIP(ip)
	ifs, err := net.Interfaces()
	if err != nil || want == nil {
		return 1500
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(want) {
				return ifc.MTU
			}
		}
	}
	return 1500
}

// HasAddress reports whether ip is one of this machine's addresses.
func HasAddress(ip string) bool {
	want := net.ParseIP(ip)
	if want == nil {
		return false
	}
	if want.IsLoopback() || want.IsUnspecified() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(want) {
			return true
		}
	}
	return false
}
