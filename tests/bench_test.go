package tests

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/tests/harness"
)

// BenchmarkClusterFormation measures, per iteration, a fresh 3-node cluster:
// bootstrap, each join, time from the third join to 3 dqlite voters, and the
// idle daemon RSS. Reported as custom metrics; nothing here is asserted.
func BenchmarkClusterFormation(b *testing.B) {
	var boot, j2, j3, to3, rss float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c := harness.New(b, 3)
		n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)
		b.StartTimer()
		boot += ms(bootstrap(b, n1, "control,compute,storage"))
		j2 += ms(join(b, n1, n2, "control"))
		start := time.Now()
		j3 += ms(join(b, n1, n3, "control"))
		harness.Eventually(b, 30*time.Second, "3 voters", func() error {
			st, err := status(b, n1)
			if err != nil {
				return err
			}
			if voters(st) != 3 {
				return fmt.Errorf("%d voters", voters(st))
			}
			return nil
		})
		to3 += ms(time.Since(start))
		b.StopTimer()
		time.Sleep(3 * time.Second) // let the daemons settle to idle
		for _, nd := range c.Nodes {
			rss += float64(daemonRSSKiB(b, nd)) / 3
		}
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(boot/n, "bootstrap-ms")
	b.ReportMetric(j2/n, "join2-ms")
	b.ReportMetric(j3/n, "join3-ms")
	b.ReportMetric(to3/n, "to-3-voters-ms")
	b.ReportMetric(rss/n, "idle-rss-KiB")
}

// BenchmarkStatus measures `cloudctl status` end to end on a 3-node cluster.
func BenchmarkStatus(b *testing.B) {
	c := harness.New(b, 3)
	bootstrap(b, c.Node(1), "control")
	join(b, c.Node(1), c.Node(2), "control")
	join(b, c.Node(1), c.Node(3), "control")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.Node(2).MustRun(b, "status")
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func daemonRSSKiB(b testing.TB, nd *harness.Node) int {
	pid := nd.Pid()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatalf("read rss of %s: %v", nd.Name, err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}

// BenchmarkGaleraFormation measures the time from the third control node's
// join to a three-member Galera cluster seen by every node, and the RSS of
// each mariadbd afterwards (single topology).
func BenchmarkGaleraFormation(b *testing.B) {
	var form, rss float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c := harness.New(b, 3)
		n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)
		bootstrap(b, n1, "control")
		waitInstances(b, n1, 90*time.Second, standaloneUp)
		join(b, n1, n2, "control")
		b.StartTimer()
		start := time.Now()
		join(b, n1, n3, "control")
		for _, nd := range c.Nodes {
			waitInstances(b, nd, 3*time.Minute, galeraSize(3))
		}
		form += ms(time.Since(start))
		b.StopTimer()
		for _, nd := range c.Nodes {
			rss += float64(mariadbRSSKiB(b, nd)) / 3
		}
		b.StartTimer()
	}
	b.ReportMetric(form/float64(b.N), "third-join-to-size3-ms")
	b.ReportMetric(rss/float64(b.N), "mariadbd-rss-KiB")
}

func mariadbRSSKiB(b testing.TB, nd *harness.Node) int {
	out, err := nd.Exec(b.(interface{ Context() context.Context }).Context(), "sh", "-c",
		"for p in $(pgrep -x mariadbd); do grep -q -- '"+nd.StateDir+"/' /proc/$p/cmdline && grep VmRSS /proc/$p/status; done; true")
	if err != nil {
		b.Fatalf("rss: %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		return 0
	}
	v, _ := strconv.Atoi(f[1])
	return v
}
