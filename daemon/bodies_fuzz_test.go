package daemon

import (
	"bytes"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/preflight"
	"github.com/cloudctl/cloudctl/roles/driver"
	splan "github.com/cloudctl/cloudctl/roles/storage/plan"
)

// FuzzDecodeBodies feeds any bytes, as the JSON body of a request, to the
// decoder of every cloudd endpoint that reads a body (and of the drivers'
// endpoints), then to the checks that run on the decoded value before
// anything touches the cluster: a body is decoded or refused with an error,
// never a panic, and a refused body changes nothing.
func FuzzDecodeBodies(f *testing.F) {
	for _, s := range []string{
		`{"name":"node2","secret":"x"}`,
		`{"name":"node2","ttl_seconds":60}`,
		`{"add":["compute"],"remove":["storage"]}`,
		`{"region":"r1","zone":null}`,
		`{"floating_address":"10.0.0.100/24"}`,
		`{"version":1,"cluster":"cloud","mysql_topology":"single"}`,
		`{"services":["identity"]}`,
		`{"pad":"xxxx"}`,
		`{"name":"node2","init_config":{"cloudctl.node":"{\"roles\":[\"control\"]}"}}`,
		`{"name":"` + string(make([]byte, 100)) + `"}`,
		`{"token":"node2","secret":"x","node":{"name":"node2","address":"10.0.0.2:7443","roles":["control"]},"version":"1","nonce":"n","pad":"pp"}`,
		`{"node":"node2","path":"loop:8GiB","wipe":true}`,
		`{"node":"node2","path":"/dev/sdb"}`,
		`{"Kind":"remove-role","Node":"node2","Role":"storage","Force":true}`,
		`[]`, `null`, `{"name":1}`, `{"unknown":true}`, `{`, "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		decodeInto := func(v any) error {
			r := httptest.NewRequest("POST", "/1.0/x", bytes.NewReader(body))
			return decode(r, v)
		}
		var tc api.TokenCheck
		if decodeInto(&tc) == nil {
			_ = api.ValidNodeName(tc.Name)
			_ = api.SecretSHA256(tc.Secret)
		}
		var tr api.TokenRequest
		if decodeInto(&tr) == nil {
			_ = api.ValidNodeName(tr.Name)
		}
		var rc api.RolesChange
		if decodeInto(&rc) == nil {
			_, _ = nextRoles(nodeRow{Name: "node1", Roles: []string{"control", "compute"}}, rc, false)
		}
		var l api.Labels
		_ = decodeInto(&l)
		var p api.Plan
		_ = decodeInto(&p)
		var fa api.FloatingAddress
		if decodeInto(&fa) == nil && fa.Address != "" {
			_ = validFloatingAddress(fa.Address)
		}
		var echo preflight.EchoRequest
		_ = decodeInto(&echo)
		var ports preflight.PortsRequest
		_ = decodeInto(&ports)
		var ji api.JoinIntent
		if decodeInto(&ji) == nil {
			_ = api.ValidNodeName(ji.Name)
			_, _ = parseNodeInit(ji.InitConfig)
		}
		var dc api.DBCheckRequest
		_ = driver.DecodeBody(driver.Request{Body: bytes.NewReader(body)}, &dc)
		// The untrusted preflight's body (plan and probe), and the joiner's
		// account of itself that the members check.
		if jr, err := decodeJoinRequest(httptest.NewRequest("POST", "/1.0/preflight", bytes.NewReader(body))); err == nil {
			_ = validJoinNode(jr.Node)
			_ = api.SecretSHA256(jr.Secret)
		}
		// The role endpoints' bodies: compute's access request, storage's
		// disk add (its path parsed as the handler does) and guard.
		var ar api.ComputeAccessRequest
		if driver.DecodeBody(driver.Request{Body: bytes.NewReader(body)}, &ar) == nil {
			_ = api.ValidNodeName(ar.Name)
		}
		var sd api.StorageDiskAdd
		if driver.DecodeBody(driver.Request{Body: bytes.NewReader(body)}, &sd) == nil {
			_, _, _ = splan.ParseFileDisk(sd.Path)
		}
		_, _ = driver.DecodeChange(driver.Request{Body: bytes.NewReader(body)})
		// The untrusted endpoints' guard takes any source and verdict.
		var g attemptGuard
		now := time.Unix(0, 0)
		g.admit(string(body), now)
		g.result(string(body), len(body)%2 == 0, now)
	})
}
