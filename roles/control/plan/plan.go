// Package plan is the control role's planning side: the MySQL topology rule
// (one MariaDB instance for every service below a RAM threshold, one per
// service at or above it), its reason, and the validation of the control part
// of a plan. It is pure and links no runtime library, so the CLI, the probe
// and bootstrap use it; the control driver only validates what it carries.
package plan

import (
	"fmt"

	"github.com/cloudctl/cloudctl/api"
)

// MySQL topologies.
const (
	// Single is one MariaDB instance for all control-plane services.
	Single = "single"
	// Multi is one MariaDB instance per control-plane service.
	Multi = "multi"
)

// DecideTopology applies the rule to a machine's installed RAM (GiB, rounded
// to the nearest GiB) and the manifest's threshold. fact describes where the
// figure comes from; it begins the returned reason.
func DecideTopology(installedGiB, thresholdGiB int, fact string) (topology, reason string) {
	if installedGiB <= 0 {
		return Single, "installed RAM unknown: one MariaDB instance for all services"
	}
	if installedGiB >= thresholdGiB {
		return Multi, fmt.Sprintf("%s >= %d GiB: one MariaDB instance per service", fact, thresholdGiB)
	}
	return Single, fmt.Sprintf("%s < %d GiB: one MariaDB instance for all services", fact, thresholdGiB)
}

// Override returns the topology a user forced and a reason that says what the
// hardware alone would have chosen. forced "" or "auto" keeps the decision.
func Override(decided, reason, forced string) (string, string) {
	if forced == "" || forced == "auto" || forced == decided {
		return decided, reason
	}
	return forced, fmt.Sprintf("set to %s (%s), overriding the hardware's choice of %s: %s", forced, Describe(forced), decided, reason)
}

// Describe says what a topology means, in a few words.
func Describe(topology string) string {
	if topology == Multi {
		return "one MariaDB instance per service"
	}
	return "one MariaDB instance for all services"
}

// ValidTopology checks a topology value.
func ValidTopology(t string) error {
	if t != Single && t != Multi {
		return fmt.Errorf("unknown MySQL topology %q: use single or multi", t)
	}
	return nil
}

// Validate checks the control part of a stored plan: the topology must have
// been decided when the plan was made.
func Validate(p api.Plan) error {
	if p.MySQLTopology == "" {
		return fmt.Errorf("the plan carries no MySQL topology: bootstrap with `cloudctl bootstrap`, which decides it")
	}
	return ValidTopology(p.MySQLTopology)
}
