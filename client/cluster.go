package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/lieur/lieur/transport/wire"
)

// Status returns the view of whichever binder answers first.
func (c *Client) Status(ctx context.Context) (wire.Status, error) {
	return c.status(ctx, "")
}

// StatusOf returns the view of the binder at binderURL (in any form Config
// accepts; it need not be one of the configured binders). It asks that
// binder only.
func (c *Client) StatusOf(ctx context.Context, binderURL string) (wire.Status, error) {
	b, err := normaliseBinder(binderURL)
	if err != nil {
		return wire.Status{}, fmt.Errorf("client: status of %q: %w", binderURL, err)
	}
	return c.status(ctx, b)
}

func (c *Client) status(ctx context.Context, only string) (wire.Status, error) {
	cl := call{method: http.MethodGet, path: "/v1/status", idempotent: true, only: only}
	rep, err := c.do(ctx, cl)
	if err != nil {
		return wire.Status{}, err
	}
	return decodeReply[wire.Status](rep, &cl)
}

// Cluster returns the cluster's members and leader as one binder sees
// them.
func (c *Client) Cluster(ctx context.Context) (wire.ClusterResponse, error) {
	cl := call{method: http.MethodGet, path: "/v1/cluster", idempotent: true}
	rep, err := c.do(ctx, cl)
	if err != nil {
		return wire.ClusterResponse{}, err
	}
	return decodeReply[wire.ClusterResponse](rep, &cl)
}

// Join asks the binder at binderURL to add the node described by req to
// the cluster as a voter. With an empty binderURL any configured binder is
// asked. Adding a node that is already a member with the same addresses is
// harmless, so Join fails over like a read.
func (c *Client) Join(ctx context.Context, binderURL string, req wire.JoinRequest) error {
	only := ""
	if binderURL != "" {
		var err error
		if only, err = normaliseBinder(binderURL); err != nil {
			return fmt.Errorf("client: join via %q: %w", binderURL, err)
		}
	}
	_, err := c.do(ctx, call{
		method:     http.MethodPost,
		path:       "/v1/cluster/join",
		body:       req,
		idempotent: true,
		only:       only,
	})
	return err
}

// RemoveMember removes the binder node id from the cluster.
func (c *Client) RemoveMember(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("client: remove member: empty id")
	}
	_, err := c.do(ctx, call{
		method:     http.MethodDelete,
		path:       "/v1/cluster/members/" + url.PathEscape(id),
		idempotent: true,
	})
	return err
}
