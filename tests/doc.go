// Package tests holds cloudctl's multi-node integration tests: real cloudd
// daemons (microcluster + dqlite) in network namespaces, driven through the
// real cloudctl binary. The harness lives in tests/harness.
package tests
