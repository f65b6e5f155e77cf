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
	"time"

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
	// TTL, when not zero (1s to 1h), makes the registration a lease:
	// Register then heartbeats every TTL/3 in the background, failing over
	// between binders, registers again when a binder answers that the id
	// is unknown (it expired or was removed), and stops on Close.
	TTL time.Duration
	// OnLease, when set, is told of the lease's life: each call gets the
	// new state and, for LeaseFailing, the error. It is called from the
	// heartbeat goroutine and must not block for long.
	OnLease func(LeaseState, error)
}

// LeaseState is where a leased registration stands.
type LeaseState string

// Lease states reported to Registration.OnLease.
const (
	// LeaseActive: the last heartbeat was accepted.
	LeaseActive LeaseState = "active"
	// LeaseFailing: a heartbeat failed (no binder answered); the lease
	// may expire if this lasts a TTL.
	LeaseFailing LeaseState = "failing"
	// LeaseReregistered: a binder no longer knew the id; it was registered
	// again.
	LeaseReregistered LeaseState = "re-registered"
	// LeaseClosed: Close stopped the heartbeats.
	LeaseClosed LeaseState = "closed"
)

// Registered is a live registration. Close removes it.
type Registered struct {
	c     *Client
	id    string
	index uint64
	reg   Registration

	stop context.CancelFunc // ends the heartbeats
	done chan struct{}      // closed when they have ended

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
	if r.stop != nil {
		r.stop()
		<-r.done
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
	res, err := c.register(ctx, reg)
	if err != nil {
		return nil, err
	}
	r := &Registered{c: c, id: res.ID, index: res.Index, reg: reg}
	r.reg.ID = res.ID // a re-registration keeps the id the binder chose
	if reg.TTL > 0 {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return r, ErrClosed
		}
		c.watchers.Add(1) // Client.Close waits for the heartbeats to end
		c.mu.Unlock()
		hctx, stop := context.WithCancel(c.life)
		r.stop, r.done = stop, make(chan struct{})
		go func() {
			defer c.watchers.Done()
			r.heartbeat(hctx)
		}()
	}
	return r, nil
}

func (c *Client) register(ctx context.Context, reg Registration) (wire.RegisterResponse, error) {
	body := wire.RegisterRequest{Type: reg.Type, Address: reg.Address, Port: reg.Port, ID: reg.ID, Meta: reg.Meta}
	if reg.TTL > 0 {
		body.TTL = reg.TTL.String()
	}
	cl := call{method: http.MethodPost, path: "/v1/services", body: body, idempotent: true}
	rep, err := c.do(ctx, cl)
	if err != nil {
		return wire.RegisterResponse{}, err
	}
	res, err := decodeReply[wire.RegisterResponse](rep, &cl)
	if err != nil {
		return wire.RegisterResponse{}, err
	}
	if res.ID == "" {
		res.ID = reg.ID
	}
	c.noteIndex(res.Index)
	return res, nil
}

// Heartbeat renews the lease of registration id once. It fails with an
// error matching ErrUnknownID when the binders no longer know the id.
func (c *Client) Heartbeat(ctx context.Context, id string) error {
	cl := call{
		method:     http.MethodPut,
		path:       "/v1/services/" + url.PathEscape(id) + "/heartbeat",
		notFound:   ErrUnknownID,
		idempotent: true,
	}
	_, err := c.do(ctx, cl)
	return err
}

// heartbeat renews the lease every TTL/3 until ctx ends. Three beats per
// TTL survive a lost one and a binder failover.
func (r *Registered) heartbeat(ctx context.Context) {
	defer close(r.done)
	notify := func(s LeaseState, err error) {
		if r.reg.OnLease != nil {
			r.reg.OnLease(s, err)
		}
	}
	defer notify(LeaseClosed, nil)
	every := r.reg.TTL / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		bctx, cancel := context.WithTimeout(ctx, every)
		err := r.c.Heartbeat(bctx, r.id)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			notify(LeaseActive, nil)
		case errors.Is(err, ErrUnknownID):
			rctx, cancel := context.WithTimeout(ctx, every)
			_, rerr := r.c.register(rctx, r.reg)
			cancel()
			if rerr != nil {
				notify(LeaseFailing, fmt.Errorf("register %s again: %w", r.id, rerr))
			} else {
				notify(LeaseReregistered, nil)
			}
		default:
			notify(LeaseFailing, err)
		}
	}
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
