package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/cloudctl/cloudctl/internal/strictyaml"
	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/render"
)

// newManifestCmd is `cloudctl manifest show|validate`.
func newManifestCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manifest",
		Short: "Show the effective manifest or check a manifest file",
		Long: "The manifest holds the components, services, thresholds, pool names, ports, timeouts and\n" +
			"role groups cloudctl uses. A file given with --manifest at bootstrap is overlaid on the\n" +
			"built-in default. See docs/manifest.md.",
	}
	cmd.AddCommand(newManifestShowCmd(a), newManifestValidateCmd(a))
	return cmd
}

func newManifestShowCmd(a *app) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Print the effective manifest: the cluster's on a member, else the default (with --manifest FILE overlaid)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, _, err := a.effectiveManifest(cmd.Context(), file)
			if err != nil {
				return manifestProblems(a, file, err)
			}
			if a.format == "yaml" {
				// Marshal writes the exact form stored in the cluster database
				// (whole numbers stay whole), which `--manifest` reads back.
				data, err := m.Marshal()
				if err != nil {
					return err
				}
				_, err = a.out.Write(data)
				return err
			}
			return render.Write(a.out, a.format, m, func(w io.Writer) error {
				return manifestTable(w, m)
			})
		},
	}
	cmd.Flags().StringVar(&file, "manifest", "", "manifest file to overlay on the default")
	return cmd
}

// validateResult is `manifest validate --format json|yaml`.
type validateResult struct {
	File   string              `json:"file"`
	OK     bool                `json:"ok"`
	Errors []*strictyaml.Error `json:"errors"`
}

func newManifestValidateCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a manifest file as bootstrap would use it; print FILE: ok or every problem",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := args[0]
			_, err := manifests.Effective(file)
			var problems strictyaml.Errors
			if err != nil && !errors.As(err, &problems) {
				return err
			}
			res := validateResult{File: file, OK: len(problems) == 0, Errors: problems}
			if res.Errors == nil {
				res.Errors = []*strictyaml.Error{}
			}
			werr := render.Write(a.out, a.format, res, func(w io.Writer) error {
				if res.OK {
					_, err := fmt.Fprintf(w, "%s: ok\n", file)
					return err
				}
				_, err := fmt.Fprintln(w, problems.Error())
				return err
			})
			if werr != nil {
				return werr
			}
			if !res.OK {
				return exitError{code: 1, err: fmt.Errorf("%s: %s", file, countProblems(len(problems)))}
			}
			return nil
		},
	}
}

// manifestProblems prints a manifest's problems, one per line, and returns
// an error that sums them up; other errors are returned as they are.
func manifestProblems(a *app, file string, err error) error {
	var problems strictyaml.Errors
	if !errors.As(err, &problems) {
		return err
	}
	fmt.Fprintln(a.errOut, problems.Error())
	if file == "" {
		file = "the built-in manifest"
	}
	return exitError{code: 1, err: fmt.Errorf("%s: %s", file, countProblems(len(problems)))}
}

func countProblems(n int) string {
	if n == 1 {
		return "1 problem"
	}
	return fmt.Sprintf("%d problems", n)
}

// manifestTable lists every value as KEY VALUE SOURCE, in manifest order.
func manifestTable(w io.Writer, m *manifests.Manifest) error {
	var n yaml.Node
	if err := n.Encode(m); err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	t := render.NewTable(w, "KEY", "VALUE", "SOURCE")
	flatten(&n, "", func(path, value string) {
		src := m.Source(path)
		if src == manifests.DefaultName {
			src = "default"
		}
		t.Row(path, value, src)
	})
	return t.Flush()
}

// flatten calls row for every scalar (and every list of scalars) in n.
func flatten(n *yaml.Node, path string, row func(path, value string)) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			flatten(c, path, row)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if path != "" {
				p = path + "." + p
			}
			flatten(n.Content[i+1], p, row)
		}
	case yaml.SequenceNode:
		vals := make([]string, 0, len(n.Content))
		for i, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				flatten(c, fmt.Sprintf("%s[%d]", path, i), row)
				continue
			}
			vals = append(vals, c.Value)
		}
		if len(vals) == len(n.Content) {
			row(path, strings.Join(vals, ","))
		}
	default:
		row(path, n.Value)
	}
}
