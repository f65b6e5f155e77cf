package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/lieur/lieur/transport/wire"
)

// maxServerWait is the longest wait a binder honours in one request.
const maxServerWait = 5 * time.Minute

// Lookup asks a binder for one instance of typ, chosen round-robin by the
// binder. It neither reads nor fills the cache. It fails with an error
// matching ErrUnknownService when typ has no instance.
func (c *Client) Lookup(ctx context.Context, typ string) (Instance, error) {
	return c.lookup(ctx, typ, 0)
}

func (c *Client) lookup(ctx context.Context, typ string, wait time.Duration) (Instance, error) {
	if typ == "" {
		return Instance{}, errors.New("client: lookup: empty service type")
	}
	cl := call{
		method:     http.MethodGet,
		path:       "/v1/lookup/" + url.PathEscape(typ),
		query:      c.readQuery(),
		idempotent: true,
		notFound:   ErrUnknownService,
		wait:       wait,
	}
	rep, cl, err := c.read(ctx, cl)
	if err != nil {
		return Instance{}, err
	}
	w, err := decodeReply[wire.Instance](rep, &cl)
	if err != nil {
		return Instance{}, err
	}
	return fromWire(w), nil
}

// Resolve returns an instance of typ. The first call for a type asks a
// binder; later calls return the same instance from the cache, without
// network traffic, until ReportDown or Forget drops it. A type with no
// instance fails with an error matching ErrUnknownService and is not
// cached.
func (c *Client) Resolve(ctx context.Context, typ string) (Instance, error) {
	return c.ResolveWait(ctx, typ, 0)
}

// ResolveWait is Resolve, except that when typ has no instance it waits up
// to delay for one to be registered. It returns as soon as one appears;
// after delay it fails with an error matching ErrUnknownService. It returns
// early with ctx's error when ctx ends first.
func (c *Client) ResolveWait(ctx context.Context, typ string, delay time.Duration) (Instance, error) {
	if inst, ok := c.cached(typ); ok {
		return inst, nil
	}
	deadline := time.Now().Add(delay)
	for {
		epoch := c.epochOf(typ)
		wait := min(time.Until(deadline), maxServerWait)
		start := time.Now()
		inst, err := c.lookup(ctx, typ, max(wait, 0))
		if err == nil {
			c.remember(typ, epoch, inst)
			return inst.clone(), nil
		}
		// Binders cap waits, so a long delay takes several requests. A
		// binder that answered well before the wait ran out is not
		// honouring it, and asking again would only spin.
		capped := wait == maxServerWait && time.Since(start) >= maxServerWait/2
		if !errors.Is(err, ErrUnknownService) || !capped || time.Until(deadline) <= 0 {
			return Instance{}, err
		}
	}
}

// ReportDown tells the binders that inst does not answer. A binder checks
// the instance itself and answers with a verdict: wire.VerdictRemoved,
// wire.VerdictAlive or wire.VerdictUnknown. Whatever the outcome, the
// cached instance for inst.Type is dropped, so the next Resolve asks anew.
//
// It fails with an error matching ErrUnknownID when no registration has
// inst.ID, and is not resent once a binder may have received it (see
// ErrOutcomeUnknown).
func (c *Client) ReportDown(ctx context.Context, inst Instance) (string, error) {
	// Dropping first keeps concurrent Resolves from reusing the dead
	// instance while the report runs; dropping again afterwards discards
	// anything a Resolve cached meanwhile, before the binder acted.
	c.Forget(inst.Type)
	defer c.Forget(inst.Type)

	cl := call{
		method:   http.MethodPost,
		path:     "/v1/reports",
		query:    c.readQuery(),
		body:     wire.ReportRequest{ID: inst.ID},
		notFound: ErrUnknownID,
	}
	rep, err := c.do(ctx, cl)
	if err != nil {
		return "", err
	}
	res, err := decodeReply[wire.ReportResponse](rep, &cl)
	if err != nil {
		return "", fmt.Errorf("report %q down: %w", inst.ID, err)
	}
	c.noteIndex(res.Index)
	return res.Verdict, nil
}

// Forget drops the cached instance of typ, if any; the next Resolve asks a
// binder.
func (c *Client) Forget(typ string) {
	c.cacheMu.Lock()
	defer c.cacheMu.Unlock()
	delete(c.cache, typ)
	c.epoch[typ]++
}

func (c *Client) cached(typ string) (Instance, bool) {
	c.cacheMu.Lock()
	defer c.cacheMu.Unlock()
	inst, ok := c.cache[typ]
	if !ok {
		return Instance{}, false
	}
	return inst.clone(), true
}

func (c *Client) epochOf(typ string) uint64 {
	c.cacheMu.Lock()
	defer c.cacheMu.Unlock()
	return c.epoch[typ]
}

// remember caches inst unless typ was forgotten since epoch was read.
func (c *Client) remember(typ string, epoch uint64, inst Instance) {
	c.cacheMu.Lock()
	defer c.cacheMu.Unlock()
	if c.epoch[typ] == epoch {
		c.cache[typ] = inst.clone()
	}
}
