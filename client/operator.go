package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/lieur/lieur/transport/wire"
)

// Operator calls: the Raft peer list, promotion and demotion of read
// replicas, leadership transfer. A follower forwards each change to the
// leader. They need an admin token when the binders require tokens.

// RaftPeers returns the Raft configuration as one binder sees it, with
// each server's own view and the leader's record of servers it does not
// hear from.
func (c *Client) RaftPeers(ctx context.Context) (wire.RaftPeersResponse, error) {
	cl := call{method: http.MethodGet, path: "/v1/cluster/peers", idempotent: true}
	rep, err := c.do(ctx, cl)
	if err != nil {
		return wire.RaftPeersResponse{}, err
	}
	return decodeReply[wire.RaftPeersResponse](rep, &cl)
}

// Promote makes the read replica id a voter. Promoting a voter changes
// nothing, so the call fails over like a read.
func (c *Client) Promote(ctx context.Context, id string) error {
	return c.changeRole(ctx, "promote", id)
}

// Demote makes the voter id a read replica (the binders refuse when that
// would leave the voters without a quorum they hear from, or fewer than
// three of them). Demoting a nonvoter changes nothing.
func (c *Client) Demote(ctx context.Context, id string) error {
	return c.changeRole(ctx, "demote", id)
}

func (c *Client) changeRole(ctx context.Context, verb, id string) error {
	if id == "" {
		return errors.New("client: " + verb + ": empty id")
	}
	_, err := c.do(ctx, call{
		method:     http.MethodPost,
		path:       "/v1/cluster/members/" + url.PathEscape(id) + "/" + verb,
		idempotent: true,
		notFound:   ErrUnknownID,
	})
	return err
}

// TransferLeader hands leadership to the voter to, or with to "" to the
// most up-to-date other voter, and returns the new leader's id. A transfer
// to a named voter is idempotent; one to any voter is not (sent twice, it
// would move leadership twice), so it is not resent once it may have
// arrived.
func (c *Client) TransferLeader(ctx context.Context, to string) (string, error) {
	cl := call{method: http.MethodPost, path: "/v1/cluster/transfer-leader", idempotent: to != "", notFound: ErrUnknownID}
	if to != "" {
		cl.query = url.Values{"to": {to}}
	}
	rep, err := c.do(ctx, cl)
	if err != nil {
		return "", err
	}
	resp, err := decodeReply[wire.TransferLeaderResponse](rep, &cl)
	return resp.Leader, err
}
