// Package bench is the benchmark harness behind `make bench`: it builds
// cloudctl, cloudd and microcluster's own example daemon (microd, the floor),
// runs them in throw-away network namespaces, measures bootstrap, join,
// failover, power-cut recovery, cost at rest and CLI start, each beside a
// floor measured in the same run, and writes docs/benchmarks.md and the
// plots in docs/. Its only test, TestBench, skips unless CLOUDCTL_BENCH=1,
// so `go test ./...` does not run it. Nothing here asserts a timing.
package bench
