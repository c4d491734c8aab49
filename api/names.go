package api

import (
	"fmt"
	"regexp"
)

var nodeNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidNodeName checks a node (or cluster) name: a lowercase DNS label.
func ValidNodeName(name string) error {
	if !nodeNameRE.MatchString(name) {
		return fmt.Errorf("invalid node name %q: use 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit", name)
	}
	return nil
}
