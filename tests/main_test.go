package tests

import (
	"os"
	"testing"

	"github.com/cloudctl/cloudctl/tests/harness"
)

// TestMain removes the binaries the harness built once the tests are done.
func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
