package plan

import (
	"strings"
	"testing"

	"github.com/cloudctl/cloudctl/api"
)

func TestDecideTopology(t *testing.T) {
	for _, c := range []struct {
		gib, th int
		want    string
	}{{31, 32, Single}, {32, 32, Multi}, {64, 32, Multi}, {0, 32, Single}, {16, 16, Multi}} {
		got, why := DecideTopology(c.gib, c.th, "x GiB")
		if got != c.want || why == "" {
			t.Errorf("DecideTopology(%d, %d) = %q, %q; want %q", c.gib, c.th, got, why, c.want)
		}
	}
}

func TestOverride(t *testing.T) {
	if got, why := Override(Single, "small", "auto"); got != Single || why != "small" {
		t.Fatalf("auto changed the decision: %q %q", got, why)
	}
	got, why := Override(Single, "small", Multi)
	if got != Multi || !strings.Contains(why, "overriding the hardware's choice of single") {
		t.Fatalf("forced multi: %q %q", got, why)
	}
}

func TestValidate(t *testing.T) {
	if err := Validate(api.Plan{}); err == nil {
		t.Fatal("a plan without a topology was accepted")
	}
	if err := Validate(api.Plan{MySQLTopology: "both"}); err == nil {
		t.Fatal("an unknown topology was accepted")
	}
	if err := Validate(api.Plan{MySQLTopology: Multi}); err != nil {
		t.Fatal(err)
	}
}
