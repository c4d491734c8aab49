package client

import (
	"context"
	"time"
)

// Recovery states, as GET /1.0/recover answers them.
const (
	// RecoveryNone: no recovery was ever asked on this node.
	RecoveryNone = ""
	// RecoveryRequested: cloudd accepted it and restarts to rewrite the
	// cluster database's membership (it must not run while it does).
	RecoveryRequested = "requested"
	// RecoveryRestarted: the membership was rewritten; cloudd now removes
	// the lost members.
	RecoveryRestarted = "restarted"
	// RecoveryDone: the lost members are gone; this node is a cluster of one.
	RecoveryDone = "done"
	// RecoveryFailed: Error says what went wrong and what to do.
	RecoveryFailed = "failed"
)

// Recovery is the state of `cloudctl cluster recover` on this node: the
// survivor, the members it drops, and how far it went.
type Recovery struct {
	State string `json:"state"`
	// Survivor is this node; Dropped are the members that did not answer.
	Survivor string   `json:"survivor"`
	Dropped  []string `json:"dropped"`
	// Reachable are the cluster database voters that answered when it was asked.
	Reachable   []string  `json:"reachable"`
	Voters      int       `json:"voters"`
	RequestedAt time.Time `json:"requested_at"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`
	Error       string    `json:"error,omitempty"`
}

// Recover asks cloudd to rebuild the cluster from this node after a majority
// of the cluster database voters is lost for good. cloudd refuses, with the
// reason, while a majority still answers. It answers once the request is
// accepted; cloudd then restarts itself: follow with RecoveryState.
func (c *Client) Recover(ctx context.Context) (Recovery, error) {
	var r Recovery
	err := c.query(ctx, "POST", "recover", nil, &r)
	return r, err
}

// RecoveryState returns how far the last recovery on this node went.
func (c *Client) RecoveryState(ctx context.Context) (Recovery, error) {
	var r Recovery
	err := c.query(ctx, "GET", "recover", nil, &r)
	return r, err
}
