//go:build tools

// Package tools pins modules the project uses so `go mod tidy` keeps them.
package tools

import (
	_ "github.com/AlecAivazis/survey/v2"
	_ "github.com/canonical/lxd/client"
	_ "github.com/canonical/microcluster/microcluster"
	_ "github.com/ceph/go-ceph/rados"
	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jaypipes/ghw"
)
