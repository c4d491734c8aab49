package api

import "encoding/json"

// HA verdicts of a layer.
const (
	HAYes      = "yes"
	HANo       = "no"
	HADegraded = "degraded"
)

// Layer names, in the order status shows them.
const (
	LayerClusterDB = "cluster-database"
	LayerControl   = "control"
	LayerStorage   = "storage"
	LayerCompute   = "compute"
	LayerEndpoint  = "endpoint"
)

// Layer is one layer of the cluster's status: the cluster database (dqlite)
// and one per role driver (control databases, storage, compute, floating
// endpoint). JSON names are stable.
type Layer struct {
	// Name is the layer's key (LayerControl...); Title is how people read it.
	Name  string `json:"name"`
	Title string `json:"title"`
	// Built is false for a role recorded on members whose driver this cloudd
	// does not have yet: nothing runs for it.
	Built bool `json:"built"`
	// HA is "yes", "no" or "degraded"; Reason says why when it is not "yes".
	HA     string `json:"ha"`
	Reason string `json:"reason,omitempty"`
	// Health is "ok", "warning" or "error".
	Health  string        `json:"health"`
	Members []LayerMember `json:"members"`
	// Details are the layer's own data (e.g. the control layer's instances).
	Details json.RawMessage `json:"details,omitempty"`
}

// LayerMember is one node's part in a layer.
type LayerMember struct {
	Node string `json:"node"`
	// State is the layer's word for it ("voter", "running", "up", "unreachable").
	State  string `json:"state"`
	Detail string `json:"detail,omitempty"`
}

// Health values.
const (
	HealthOK      = "ok"
	HealthWarning = "warning"
	HealthError   = "error"
)

// Layer returns the status layer called name, or nil when it is absent.
func (s Status) Layer(name string) *Layer {
	for i := range s.Layers {
		if s.Layers[i].Name == name {
			return &s.Layers[i]
		}
	}
	return nil
}
