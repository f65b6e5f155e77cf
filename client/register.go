package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"

	"github.com/lieur/lieur/transport/wire"
)

// Registration describes an application server to register.
type Registration struct {
	Type    string
	Address string
	Port    int
	// ID names the registration; registering an ID again replaces the
	// earlier registration. When empty, the binder names it
	// <type>-<address>-<port>.
	ID   string
	Meta map[string]string
}

// Registered is a live registration. Close removes it.
type Registered struct {
	c     *Client
	id    string
	index uint64

	mu     sync.Mutex // serialises Close
	closed bool
}

// ID returns the registration's id.
func (r *Registered) ID() string { return r.id }

// Index returns the Raft index at which the registration was committed.
func (r *Registered) Index() uint64 { return r.index }

// Close deregisters the instance. A registration that is already gone
// (closed before, removed after a down-report, or replaced and removed)
// counts as closed, so Close may be called any number of times; once it
// has returned nil it returns nil without network traffic. On an error the
// registration may still exist and Close may be called again.
func (r *Registered) Close(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	if _, err := r.c.Deregister(ctx, r.id); err != nil && !errors.Is(err, ErrUnknownID) {
		return fmt.Errorf("close registration %q: %w", r.id, err)
	}
	r.closed = true
	return nil
}

// Register registers an application server. Because a registration is
// identified by its id, Register is safe to resend and fails over between
// binders like a read; an empty reg.ID lets the binder use its
// deterministic default, <type>-<address>-<port>, which a resend repeats.
// Invalid input fails with an *APIError of status 400.
func (c *Client) Register(ctx context.Context, reg Registration) (*Registered, error) {
	id := reg.ID
	cl := call{
		method: http.MethodPost,
		path:   "/v1/services",
		body: wire.RegisterRequest{
			Type:    reg.Type,
			Address: reg.Address,
			Port:    reg.Port,
			ID:      id,
			Meta:    reg.Meta,
		},
		idempotent: true,
	}
	rep, err := c.do(ctx, cl)
	if err != nil {
		return nil, err
	}
	res, err := decodeReply[wire.RegisterResponse](rep, &cl)
	if err != nil {
		return nil, err
	}
	if res.ID == "" {
		res.ID = id
	}
	c.noteIndex(res.Index)
	return &Registered{c: c, id: res.ID, index: res.Index}, nil
}

// Deregister removes the registration id and returns the Raft index of the
// removal. It fails with an error matching ErrUnknownID when no
// registration has that id. Each call carries a fresh request id, which
// the cluster applies once however often it arrives, so Deregister fails
// over between binders like a read, even after an attempt whose outcome it
// could not learn.
func (c *Client) Deregister(ctx context.Context, id string) (uint64, error) {
	if id == "" {
		return 0, errors.New("client: deregister: empty id")
	}
	cl := call{
		method:   http.MethodDelete,
		path:     "/v1/services/" + url.PathEscape(id),
		notFound: ErrUnknownID,
		header:   http.Header{wire.HeaderRequestID: {newRequestID()}},
		// The request id makes a resend harmless.
		idempotent: true,
	}
	rep, err := c.do(ctx, cl)
	if err != nil {
		return 0, err
	}
	res, err := decodeReply[wire.IndexResponse](rep, &cl)
	if err != nil {
		return 0, err
	}
	c.noteIndex(res.Index)
	return res.Index, nil
}

// newRequestID returns 96 random bits in hex: unique without coordination.
func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
