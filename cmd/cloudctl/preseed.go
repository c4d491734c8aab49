package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cloudctl/cloudctl/bootstrap"
	"github.com/cloudctl/cloudctl/internal/strictyaml"
	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/render"
)

// newPreseedCmd is `cloudctl preseed example|validate`.
func newPreseedCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "preseed",
		Short: "Print an example preseed file, or check one against this machine",
		Long: "A preseed file holds the answers of the bootstrap wizard for a whole cluster: the site\n" +
			"settings and each node by name. `cloudctl bootstrap --preseed FILE` and\n" +
			"`cloudctl cluster join TOKEN --preseed FILE` use it unattended. See docs/preseed.md.",
	}
	cmd.AddCommand(newPreseedExampleCmd(a), newPreseedValidateCmd(a))
	return cmd
}

func newPreseedExampleCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "example",
		Short: "Print a full, commented example preseed for a three-node cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := io.WriteString(a.out, bootstrap.ExampleYAML())
			return err
		},
	}
}

// preseedResult is `preseed validate --format json|yaml`.
type preseedResult struct {
	File     string              `json:"file"`
	OK       bool                `json:"ok"`
	Errors   []*strictyaml.Error `json:"errors"`
	Warnings []string            `json:"warnings"`
	// Plan is this machine's plan, when the file is valid.
	Plan *bootstrap.Plan `json:"plan,omitempty"`
}

func newPreseedValidateCmd(a *app) *cobra.Command {
	var name, snapshot, manifest string
	var join bool
	cmd := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a preseed file; print FILE: ok or its problems",
		Long: `Check a preseed file as bootstrap (or, with --join, cluster join) would use it:
the whole file (keys, types, names, roles, addresses, disk entries), wherever it
runs; then the entry for this machine (or the one --name picks) against this
machine's hardware and addresses, when there is one. Every problem names
FILE:LINE:COLUMN and the key path; the first 10 are shown and the rest counted
(--format json lists all). Nothing is applied.`,
		Args: exactArgs(1, "cloudctl preseed validate FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := args[0]
			m, err := manifests.Effective(manifest)
			if err != nil {
				return manifestProblems(a, manifest, err)
			}
			res := preseedResult{File: file, Errors: []*strictyaml.Error{}, Warnings: []string{}}
			fname, data, err := readPreseed(a, file)
			if err != nil {
				return err
			}
			var problems strictyaml.Errors
			ps, err := bootstrap.ParsePreseed(fname, data, m.RoleGroups())
			if err == nil {
				var facts bootstrap.Facts
				facts, err = bootstrap.LiveFacts{Snapshot: snapshot, Manifest: m}.Facts(cmd.Context())
				if err != nil {
					return err
				}
				var p bootstrap.Plan
				var ws bootstrap.Problems
				p, ws, err = ps.Plan(facts, bootstrap.Selection{Join: join, Name: name})
				res.Warnings = append(res.Warnings, ws.Messages()...)
				if err == nil {
					res.Plan = &p
				}
			}
			if err != nil && !errors.As(err, &problems) {
				return err
			}
			// The file is checked wherever it runs: without --name, a file
			// with no entry for this machine is still a valid file (bootstrap
			// and join match it to their machine).
			noEntry := ""
			if name == "" && len(problems) == 1 && problems[0].Path == "nodes" && strings.HasPrefix(problems[0].Message, noLocalEntry) {
				noEntry = problems[0].Message
				problems = nil
			}
			res.Errors = append(res.Errors, problems...)
			res.OK = len(problems) == 0
			werr := render.Write(a.out, a.format, res, func(w io.Writer) error {
				if !res.OK {
					_, err := fmt.Fprintln(w, firstProblems(problems, maxProblemsShown))
					return err
				}
				fmt.Fprintf(w, "%s: ok\n", file)
				if res.Plan == nil {
					fmt.Fprintf(w, "It holds no entry for this machine (%s): bootstrap or join on one of its nodes, or check an entry here with --name.\n",
						strings.TrimPrefix(strings.SplitN(noEntry, ";", 2)[0], noLocalEntry+": "))
					for _, ws := range res.Warnings {
						fmt.Fprintf(w, "Warning: %s\n", ws)
					}
					return nil
				}
				fmt.Fprintf(w, "This machine is %s: %s, roles %s", res.Plan.Name, res.Plan.Address, joinOrDash(roleNames(res.Plan)))
				if len(res.Plan.Disks) > 0 {
					fmt.Fprintf(w, ", %d OSD disk(s)", len(res.Plan.Disks))
				}
				fmt.Fprintln(w, ".")
				for _, ws := range res.Warnings {
					fmt.Fprintf(w, "Warning: %s\n", ws)
				}
				return nil
			})
			if werr != nil {
				return werr
			}
			if !res.OK {
				return exitError{code: 1, err: fmt.Errorf("%s: %s; nothing was applied", file, countProblems(len(problems)))}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "check the entry with this name (default: the entry for this machine)")
	cmd.Flags().BoolVar(&join, "join", false, "check the entry as a joining node (site settings are the cluster's)")
	cmd.Flags().StringVar(&snapshot, "snapshot", "", "check against a ghw snapshot's hardware instead of this machine's")
	cmd.Flags().StringVar(&manifest, "manifest", "", "manifest file overlaid on the built-in default")
	return cmd
}

// noLocalEntry starts the problem bootstrap.(*Preseed).Plan reports when no
// entry of the file is for this machine.
const noLocalEntry = "no entry in nodes is for this machine"

// maxProblemsShown is how many problems a table shows; the rest are counted
// (--format json lists them all).
const maxProblemsShown = 10

// firstProblems is the first n problems, one per line, and a count of the rest.
func firstProblems(ps strictyaml.Errors, n int) string {
	if len(ps) <= n {
		return ps.Error()
	}
	return ps[:n].Error() + fmt.Sprintf("\n... and %d more (%d in all; --format json lists every one)", len(ps)-n, len(ps))
}

func roleNames(p *bootstrap.Plan) []string {
	out := make([]string, len(p.Roles))
	for i, r := range p.Roles {
		out[i] = string(r)
	}
	return out
}
