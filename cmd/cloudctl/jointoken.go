package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// tokenOnArgvWarning is printed when a join token was given as an argument:
// it still works (scripts written for earlier releases), but other users of
// the machine can read it in the process list and it stays in shell history.
const tokenOnArgvWarning = "Warning: a join token on the command line is visible to other users (process list, shell history): pass it on standard input (`cloudctl cluster join -`) or in a file (`--token-file FILE`) instead."

// joinTokenText returns the join token from standard input ("-"), a file
// (--token-file) or, discouraged, the argument itself.
func joinTokenText(a *app, args []string, tokenFile string) (string, error) {
	switch {
	case tokenFile != "" && len(args) > 0:
		return "", fmt.Errorf("both --token-file and a token argument were given: use one of them")
	case tokenFile != "":
		info, err := os.Stat(tokenFile)
		if err != nil {
			return "", fmt.Errorf("cannot read the token file %s (%v): write the token printed by `cloudctl cluster add` into it", tokenFile, err)
		}
		if info.Size() > 64<<10 {
			return "", fmt.Errorf("the token file %s is %d bytes, far too big for a join token: write only the token printed by `cloudctl cluster add` into it", tokenFile, info.Size())
		}
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return "", fmt.Errorf("cannot read the token file %s (%v): write the token printed by `cloudctl cluster add` into it", tokenFile, err)
		}
		return firstLine(string(b), "the token file "+tokenFile)
	case len(args) == 1 && args[0] == "-":
		b, err := io.ReadAll(io.LimitReader(a.in, 64<<10))
		if err != nil {
			return "", fmt.Errorf("cannot read the token from standard input: %w", err)
		}
		return firstLine(string(b), "standard input")
	case len(args) == 1:
		fmt.Fprintln(a.errOut, tokenOnArgvWarning)
		return args[0], nil
	default:
		return "", fmt.Errorf("no join token: pass it on standard input (`cloudctl cluster join - --role ROLES`) or in a file (`--token-file FILE`)")
	}
}

func firstLine(s, where string) (string, error) {
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 64<<10), 64<<10)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			return l, nil
		}
	}
	return "", fmt.Errorf("%s holds no join token: copy the token printed by `cloudctl cluster add` into it", where)
}

// maxArgs is cobra.MaximumNArgs with a usage sentence.
func maxArgs(n int, usage string) func(cmd *cobra.Command, args []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return fmt.Errorf("expected at most %d argument(s), got %d: usage: %s", n, len(args), usage)
		}
		return nil
	}
}
