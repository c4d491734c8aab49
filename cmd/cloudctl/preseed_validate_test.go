package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cloudctl/cloudctl/bootstrap"
)

// The project's own example is a valid file on any machine: matching it to
// this machine is bootstrap's and join's business.
func TestPreseedValidateExampleAnywhere(t *testing.T) {
	needAddress(t)
	f := preseedFile(t, bootstrap.ExampleYAML())
	out, errOut, err := runCLI(t, "", "preseed", "validate", f)
	if err != nil || !strings.HasPrefix(out, f+": ok\n") || !strings.Contains(out, "no entry for this machine") {
		t.Fatalf("the example on a machine it does not name: %v\n%s%s", err, out, errOut)
	}
	// --name still checks that entry against this machine.
	if _, _, err := runCLI(t, "", "preseed", "validate", f, "--name", "nosuch"); err == nil {
		t.Fatal("--name of no entry passed")
	}
}

// A file with many problems shows the first ten and counts the rest.
func TestPreseedValidateManyProblems(t *testing.T) {
	var b strings.Builder
	b.WriteString("version: 1\nnodes:\n")
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&b, "  - name: Bad_%d\n    roles: [nope]\n", i)
	}
	f := preseedFile(t, b.String())
	out, _, err := runCLI(t, "", "preseed", "validate", f)
	if err == nil {
		t.Fatal("a file with 80 problems passed")
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != maxProblemsShown+1 || !strings.Contains(lines[maxProblemsShown], "and 70 more (80 in all") {
		t.Fatalf("want %d problems and a count, got %d lines:\n%s", maxProblemsShown, len(lines), out)
	}
	js, _, _ := runCLI(t, "", "preseed", "validate", f, "--format", "json")
	if n := strings.Count(js, `"message"`); n != 80 {
		t.Fatalf("--format json lists %d problems, want 80", n)
	}
}

// A mistyped key is one message with a suggestion, not also the errors its
// absence causes (a missing name, missing roles).
func TestPreseedValidateTypoOneMessage(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"node key", "version: 1\nnodes:\n  - nmae: node1\n    roles: [control]\n", `did you mean "name"?`},
		{"roles", "version: 1\nnodes:\n  - name: node1\n    rolse: [control]\n", `did you mean "roles"?`},
		{"top level", "verison: 1\nnodes:\n  - name: node1\n    roles: [control]\n", `did you mean "version"?`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runCLI(t, "", "preseed", "validate", preseedFile(t, tc.yaml), "--name", "node1")
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if err == nil || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("want one line with %q, got %v:\n%s", tc.want, err, out)
			}
		})
	}
}
