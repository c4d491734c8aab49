package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	lxdapi "github.com/canonical/lxd/shared/api"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/client"
	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/roles"
)

// connect returns a client for the local cloudd.
func (a *app) connect() (*client.Client, error) {
	return client.New(a.stateDir())
}

// roleGroups returns the role groups accepted by --role and `role add`: the
// built-in manifest's (bootstrap and join read --manifest FILE on top).
func (a *app) roleGroups() map[string][]roles.Role {
	m, err := manifests.Default()
	if err != nil {
		return nil
	}
	return m.RoleGroups()
}

// userMessage renders an error as one sentence for a person.
func userMessage(err error) string {
	var se lxdapi.StatusError
	if errors.As(err, &se) {
		return se.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "the operation timed out: " + err.Error()
	}
	return err.Error()
}

func ago(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now).Round(time.Second)
	if d >= 0 {
		return "in " + d.String()
	}
	return (-d).String() + " ago"
}

func dbRole(n api.Node) string {
	r := n.DqliteRole
	if r == "" {
		r = "-"
	}
	if n.Leader {
		r += " (leader)"
	}
	return r
}

func joinOrDash(ss []string) string {
	if len(ss) == 0 {
		return "-"
	}
	return strings.Join(ss, ",")
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// query connects to the local cloudd and runs one client call.
func query[T any](a *app, ctx context.Context, call func(*client.Client, context.Context) (T, error)) (T, error) {
	c, err := a.connect()
	if err != nil {
		var zero T
		return zero, err
	}
	return call(c, ctx)
}
