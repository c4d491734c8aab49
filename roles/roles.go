// Package roles names the roles a node can take (control, compute, storage)
// and parses and validates lists of them. The driver interface the roles
// implement is in roles/driver; each role's driver is its own package below.
package roles

import (
	"fmt"
	"sort"
	"strings"
)

// Role is one of the roles a cloud node can take.
type Role string

// The roles of a cloudctl node.
const (
	Control Role = "control"
	Compute Role = "compute"
	Storage Role = "storage"
)

// All lists every role in display order.
var All = []Role{Control, Compute, Storage}

// Valid reports whether r is a known role.
func Valid(r Role) bool {
	for _, k := range All {
		if k == r {
			return true
		}
	}
	return false
}

// Parse turns a comma-separated list ("control,compute") into a sorted,
// de-duplicated set of roles. groups maps role-group names (e.g. "converged")
// to their roles; it may be nil.
func Parse(s string, groups map[string][]Role) ([]Role, error) {
	var out []Role
	for _, part := range strings.Split(s, ",") {
		p := strings.ToLower(strings.TrimSpace(part))
		if p == "" {
			continue
		}
		if g, ok := groups[p]; ok {
			out = append(out, g...)
			continue
		}
		r := Role(p)
		if !Valid(r) {
			return nil, fmt.Errorf("unknown role %q: use control, compute or storage%s", p, groupHint(groups))
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no role given: use one or more of control, compute, storage")
	}
	return Normalize(out), nil
}

func groupHint(groups map[string][]Role) string {
	if len(groups) == 0 {
		return ""
	}
	names := make([]string, 0, len(groups))
	for n := range groups {
		names = append(names, n)
	}
	sort.Strings(names)
	return ", or a role group (" + strings.Join(names, ", ") + ")"
}

// Normalize sorts roles into display order and removes duplicates.
func Normalize(rs []Role) []Role {
	seen := map[Role]bool{}
	for _, r := range rs {
		seen[r] = true
	}
	out := make([]Role, 0, len(seen))
	for _, r := range All {
		if seen[r] {
			out = append(out, r)
		}
	}
	return out
}

// Has reports whether rs contains r.
func Has(rs []Role, r Role) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

// Join renders roles as "control,compute".
func Join(rs []Role) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ",")
}
