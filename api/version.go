// Package api holds the wire types shared by cloudd's REST API and the
// cloudctl CLI. JSON field names here are a documented, stable contract
// (docs/api.md): add fields, never rename them.
package api

// Version is the cloudctl/cloudd version, set at build time with -ldflags.
var Version = "dev"
