package preflight

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestClockThresholds(t *testing.T) {
	for _, c := range []struct {
		off, unc time.Duration
		want     Severity
	}{
		{0, time.Millisecond, OK},
		{40 * time.Millisecond, 0, OK},
		{-200 * time.Millisecond, 10 * time.Millisecond, Warn},
		{200 * time.Millisecond, 190 * time.Millisecond, OK}, // not sure beyond 0.05 s
		{time.Second, 5 * time.Millisecond, Warn},
		{-30 * time.Second, 50 * time.Millisecond, Fail},
		{5100 * time.Millisecond, 200 * time.Millisecond, Warn},
	} {
		f := Clock("a", "b", c.off, c.unc)
		if f.Severity != c.want {
			t.Errorf("offset %s ±%s: %s, want %s (%s)", c.off, c.unc, f.Severity, c.want, f.Text())
		}
		if c.want != OK && (f.Fix == "" || !strings.Contains(f.Message, "the clock of b")) {
			t.Errorf("message does not name the node or say what to do: %q", f.Text())
		}
	}
	if f := Clock("node4", "node3", -30*time.Second, 0); !strings.Contains(f.Message, "30.000 s behind node4's") || f.Figure != "-30.000 s (±0.000 s)" {
		t.Errorf("figure: %q %q", f.Message, f.Figure)
	}
}

func TestOffset(t *testing.T) {
	t0 := time.Unix(1000, 0)
	off, unc := Offset(t0, t0.Add(3*time.Second), t0.Add(2*time.Second))
	if off != 2*time.Second || unc != time.Second {
		t.Fatalf("offset %s ±%s", off, unc)
	}
}

func TestVersion(t *testing.T) {
	for _, c := range []struct {
		a, b string
		ok   bool
	}{
		{"dev", "dev", true},
		{"v1.4.2", "v1.4.0", true},
		{"1.4.2", "v1.4.9", true},
		{"v1.5.0", "v1.4.0", false},
		{"v2.4.0", "v1.4.0", false},
		{"dev", "v1.4.0", false},
	} {
		f := Version("a", c.a, "b", c.b)
		if (f.Severity == OK) != c.ok {
			t.Errorf("%s vs %s: %s", c.a, c.b, f.Text())
		}
	}
}

func TestFindingsErr(t *testing.T) {
	fs := Findings{
		{Check: CheckClock, Severity: Warn, Message: "w"},
		{Check: CheckReach, Severity: OK, Message: "fine"},
	}
	if fs.Err("x") != nil || fs.Worst() != Warn {
		t.Fatalf("warnings are not failures: %v %s", fs.Err("x"), fs.Worst())
	}
	fs = append(fs, Unreached("node1", "node2", PortSpec{Port: 4567, Proto: "tcp", Purpose: "Galera"}, &net.OpError{Op: "dial", Err: timeoutErr{}}, false))
	err := fs.Err("refused:")
	var r *Refused
	if !errors.As(err, &r) || len(r.Findings) != 1 || fs.Worst() != Fail {
		t.Fatalf("%v", err)
	}
	want := "refused:\n  - node1 cannot reach node2 on port 4567/tcp (Galera): packets get no answer; open port 4567/tcp from node1 to node2"
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got %q", err.Error())
	}
	if (Findings{{Severity: Skip}}).Worst() != OK {
		t.Fatal("a check that was not made is not a problem")
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestUnreachedKinds(t *testing.T) {
	p := PortSpec{Port: 4568, Proto: "tcp", Purpose: "IST"}
	if f := Unreached("a", "b", p, syscall.ECONNREFUSED, true); f.Severity != Skip {
		t.Errorf("refused on a member's port: %s", f.Severity)
	}
	if f := Unreached("a", "b", p, syscall.ECONNREFUSED, false); f.Severity != Fail || !strings.Contains(f.Message, "refused") {
		t.Errorf("refused on the joiner's listener: %s", f.Text())
	}
	if f := Unreached("a", "b", p, ErrWrongAnswer, false); !strings.Contains(f.Message, "something other than cloudctl") {
		t.Errorf("wrong answer: %s", f.Text())
	}
}

func TestPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	p := PortSpec{Port: port, Proto: "tcp", Purpose: "test"}
	_, checked, err := Bind(p)
	if !checked || err == nil {
		t.Fatalf("bind of a taken port: checked %v err %v", checked, err)
	}
	f := PortTaken("node9", p, err)
	if !strings.Contains(f.Message, "port "+strconv.Itoa(port)+"/tcp, needed on node9 for test, is already in use") {
		t.Fatalf("%s", f.Text())
	}
	if _, checked, _ := Bind(PortSpec{Port: 112, Proto: "vrrp"}); checked {
		t.Fatal("VRRP is not a port")
	}
}

func TestEchoDialBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := NewEcho("n0nce")
	e.Serve(ln)
	defer e.Close()
	addr := ln.Addr().String()
	ctx := context.Background()
	if err := DialBack(ctx, addr, "n0nce", PadSize, 0, ExchangeTimeout); err != nil {
		t.Fatalf("echo: %v", err)
	}
	if err := DialBack(ctx, addr, "n0nce", PadSize, 600, ExchangeTimeout); err != nil {
		t.Fatalf("echo with small segments: %v", err)
	}
	if err := DialBack(ctx, addr, "other", 16, 0, ExchangeTimeout); !errors.Is(err, ErrWrongAnswer) {
		t.Fatalf("wrong nonce: %v", err)
	}
	// Something else on the port.
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go func() {
		c, err := other.Accept()
		if err == nil {
			_, _ = c.Write([]byte("SSH-2.0-OpenSSH\r\n"))
			c.Close()
		}
	}()
	if err := DialBack(ctx, other.Addr().String(), "n0nce", 16, 0, ExchangeTimeout); !errors.Is(err, ErrWrongAnswer) {
		t.Fatalf("another program: %v", err)
	}
}

func TestLargestPacket(t *testing.T) {
	// A path that carries packets up to 1400 bytes.
	pass := func(_ context.Context, mss int) error {
		if mss == 0 || mss+tcpIPHeaders > 1400 {
			return errors.New("stalled")
		}
		return nil
	}
	got := LargestPacket(context.Background(), 1500, pass)
	if got > 1400 || got < 1400-64 {
		t.Fatalf("largest %d, want about 1400", got)
	}
	if LargestPacket(context.Background(), 1500, func(context.Context, int) error { return errors.New("down") }) != 0 {
		t.Fatal("a path that carries nothing is not an MTU problem")
	}
	f := MTUDrop("node1", "node2", 1500, got)
	if !strings.Contains(f.Message, "larger than about") || !strings.Contains(f.Fix, "MTU of") {
		t.Fatalf("%s", f.Text())
	}
}
