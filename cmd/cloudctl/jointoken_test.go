package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestJoinTokenText(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tok")
	if err := os.WriteFile(file, []byte("\n  TOKEN-FROM-FILE  \nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, stdin, file string
		args              []string
		want, err, warn   string
	}{
		{name: "stdin", stdin: "TOKEN-FROM-STDIN\n", args: []string{"-"}, want: "TOKEN-FROM-STDIN"},
		{name: "file", file: file, want: "TOKEN-FROM-FILE"},
		{name: "argument", args: []string{"TOKEN-ARG"}, want: "TOKEN-ARG", warn: "visible to other users"},
		{name: "none", err: "no join token"},
		{name: "both", file: file, args: []string{"-"}, err: "both --token-file and a token argument"},
		{name: "empty stdin", args: []string{"-"}, err: "standard input holds no join token"},
		{name: "empty file", file: empty, err: "holds no join token"},
		{name: "missing file", file: filepath.Join(dir, "nope"), err: "cannot read the token file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var errOut bytes.Buffer
			a := &app{in: strings.NewReader(tc.stdin), errOut: &errOut, out: &bytes.Buffer{}}
			got, err := joinTokenText(a, tc.args, tc.file)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
			if tc.warn == "" && errOut.Len() > 0 || tc.warn != "" && !strings.Contains(errOut.String(), tc.warn) {
				t.Fatalf("stderr %q, want %q", errOut.String(), tc.warn)
			}
		})
	}
}
