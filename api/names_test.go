package api

import (
	"strings"
	"testing"
)

func TestValidNodeName(t *testing.T) {
	for _, ok := range []string{"node1", "a", "compute-07"} {
		if err := ValidNodeName(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Node1", "-a", "a-", "a_b", strings.Repeat("a", 64)} {
		if ValidNodeName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
