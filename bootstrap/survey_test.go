package bootstrap

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

type fakeTerminal struct{ r io.Reader }

func (f fakeTerminal) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f fakeTerminal) Fd() uintptr                { return 0 }

// What survey does: a throw-away buffered reader reads up to a cursor
// report, another one up to the end of a line. Nothing typed ahead is lost.
func TestTypeAheadKeepsKeysAfterACursorReport(t *testing.T) {
	in := TypeAhead(fakeTerminal{strings.NewReader("\x1b[12;1Redge1\ry\r\x1b[B \r")})
	report, err := bufio.NewReader(in).ReadSlice('R')
	if err != nil || string(report) != "\x1b[12;1R" {
		t.Fatalf("cursor report: %q %v", report, err)
	}
	for _, want := range []string{"edge1\r", "y\r", "\x1b[B \r"} {
		line, err := bufio.NewReader(in).ReadString('\r')
		if err != nil || line != want {
			t.Fatalf("got %q (%v), want %q", line, err, want)
		}
	}
	if n, err := in.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("after the input: %d %v", n, err)
	}
}
