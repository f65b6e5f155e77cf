package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/lieur/lieur/transport/wire"
)

// watchWait is the wait of each blocking query a Watch sends; it is the
// binders' own cap.
const watchWait = maxServerWait

// Services returns every registered instance, sorted by type then id, and
// the Raft index of the last change to the table.
func (c *Client) Services(ctx context.Context) ([]Instance, uint64, error) {
	return c.list(ctx, "/v1/services", nil)
}

// ServicesOf returns the instances of typ, sorted by id, and the Raft index
// of the last change to them. When typ has none it fails with an error
// matching ErrUnknownService and still returns the index when the binder
// sent one.
func (c *Client) ServicesOf(ctx context.Context, typ string) ([]Instance, uint64, error) {
	if typ == "" {
		return nil, 0, errors.New("client: services of a type: empty service type")
	}
	return c.list(ctx, "/v1/services/"+url.PathEscape(typ), ErrUnknownService)
}

func (c *Client) list(ctx context.Context, path string, notFound error) ([]Instance, uint64, error) {
	cl := call{method: http.MethodGet, path: path, query: c.readQuery(), idempotent: true, notFound: notFound}
	rep, cl, err := c.read(ctx, cl)
	if err != nil {
		if rep != nil && rep.status == http.StatusNotFound {
			idx, _ := parseIndex(rep) // the index is a courtesy here; the 404 is the answer
			return nil, idx, err
		}
		return nil, 0, err
	}
	return decodeList(rep, &cl)
}

func decodeList(rep *reply, cl *call) ([]Instance, uint64, error) {
	idx, err := parseIndex(rep)
	if err != nil {
		return nil, 0, fmt.Errorf("client: %s: %w", cl, err)
	}
	res, err := decodeReply[wire.ServicesResponse](rep, cl)
	if err != nil {
		return nil, 0, err
	}
	return fromWireList(res.Services), idx, nil
}

// Watch follows the instances of typ. The returned channel first receives
// the current list (empty, not nil, when typ has no instance), then every
// list that differs from the last one sent, each at a higher Raft index
// than the one before. Intermediate states may be skipped when they change
// faster than the receiver reads.
//
// Watch retries failures forever, backing off up to about a second between
// rounds over the binders. The channel is closed once ctx ends or the
// Client is closed; the receiver need not drain it for the Watch to end.
func (c *Client) Watch(ctx context.Context, typ string) <-chan []Instance {
	ch := make(chan []Instance)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		close(ch)
		return ch
	}
	c.watchers.Add(1)
	c.mu.Unlock()

	wctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.life, cancel)
	go func() {
		defer c.watchers.Done()
		defer close(ch)
		defer cancel()
		defer stop()
		c.watch(wctx, typ, ch)
	}()
	return ch
}

func (c *Client) watch(ctx context.Context, typ string, ch chan<- []Instance) {
	var (
		last     uint64
		sent     bool
		failures int
	)
	for ctx.Err() == nil {
		cl := call{
			method:     http.MethodGet,
			path:       "/v1/services/" + url.PathEscape(typ),
			query:      c.readQuery(),
			idempotent: true,
			notFound:   ErrUnknownService,
		}
		if cl.query == nil {
			cl.query = url.Values{}
		}
		// The first query answers at once, so the receiver gets the
		// current list even when it never changes.
		if sent {
			cl.query.Set("index", strconv.FormatUint(last, 10))
			cl.wait = watchWait
		}
		start := time.Now()
		list, idx, err := c.watchOnce(ctx, &cl)
		switch {
		case err != nil:
			failures++
		case sent && idx <= last:
			// The wait ran out, or a lagging binder answered. Quick answers
			// that bring nothing new mean a binder is not blocking; do not
			// let it turn the loop into a spin.
			if time.Since(start) < time.Second {
				failures++
			} else {
				failures = 0
			}
		default:
			failures = 0
			select {
			case ch <- list:
				last, sent = idx, true
			case <-ctx.Done():
				return
			}
			continue
		}
		if failures > 0 && !pause(ctx, backoff(failures)) {
			return
		}
	}
}

// watchOnce runs one query of a Watch. A 404 is the empty list.
func (c *Client) watchOnce(ctx context.Context, cl *call) ([]Instance, uint64, error) {
	rep, used, err := c.read(ctx, *cl)
	cl = &used
	if err != nil {
		if rep == nil || rep.status != http.StatusNotFound {
			return nil, 0, err
		}
		idx, err := parseIndex(rep)
		if err != nil {
			return nil, 0, fmt.Errorf("client: %s: %w", cl, err)
		}
		return []Instance{}, idx, nil
	}
	return decodeList(rep, cl)
}

// backoff returns the pause after the n-th consecutive failure: doubling
// from 50ms up to 1s, with jitter so that many clients cut off together do
// not return in step.
func backoff(n int) time.Duration {
	d := 50 * time.Millisecond << min(n-1, 5)
	d = min(d, time.Second)
	return d/2 + rand.N(d/2+1)
}

// pause waits for d; it reports false when ctx ended first.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
