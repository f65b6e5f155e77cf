package client

import (
	"errors"
	"net/http"
	"testing"

	"github.com/lieur/lieur/transport/wire"
)

// staleCluster is two binders that both refuse default reads (an election
// seen from a client that reaches no binder in contact with a leader): n1
// also lags, frozen before the client's write; n2 has applied it.
func staleCluster(t *testing.T) (*Client, *fakeBinder, *fakeBinder) {
	t.Helper()
	tab := newTable()
	tab.register(wire.Instance{ID: "old", Type: "web", Address: "10.0.0.1", Port: 80})
	n1, n2 := newFakeBinder(t, "n1", tab), newFakeBinder(t, "n2", tab)
	n1.freeze()
	c, _ := newTestClient(t, urlsOf(n1, n2), nil)
	if _, err := c.Register(testCtx(t), Registration{ID: "new", Type: "api", Address: "10.0.0.2", Port: 81}); err != nil {
		t.Fatalf("Register: %v", err)
	}
	n1.cutOff.Store(true)
	n2.cutOff.Store(true)
	return c, n1, n2
}

// When no binder serves default reads, every kind of read falls back to a
// stale one, and the fallback still reads the client's own writes: the
// lagging binder refuses the min_index, the other answers. Each call picks
// a binder at random, so the calls are repeated to meet both orders.
func TestStaleFallbackReadsOwnWrites(t *testing.T) {
	c, _, _ := staleCluster(t)
	ctx := testCtx(t)
	for i := 0; i < 20; i++ {
		inst, err := c.Lookup(ctx, "api")
		if err != nil || inst.ID != "new" {
			t.Fatalf("Lookup(api) = %+v, %v; want the client's own registration", inst, err)
		}
		all, _, err := c.Services(ctx)
		if err != nil || !hasID(all, "new") {
			t.Fatalf("Services = %v, %v; want the client's own registration", all, err)
		}
		of, _, err := c.ServicesOf(ctx, "api")
		if err != nil || !hasID(of, "new") {
			t.Fatalf("ServicesOf(api) = %v, %v; want the client's own registration", of, err)
		}
	}
}

// A Watch keeps working through the same situation: its first list comes
// from the stale fallback, and holds the client's write.
func TestWatchFallsBackToStale(t *testing.T) {
	c, _, _ := staleCluster(t)
	ch := c.Watch(testCtx(t), "api")
	list, ok := <-ch
	if !ok || !hasID(list, "new") {
		t.Fatalf("first Watch list = %v (open %v); want the client's own registration", list, ok)
	}
}

// With the fallback off, the refusal reaches the caller.
func TestNoStaleFallbackReportsTheRefusal(t *testing.T) {
	tab := newTable()
	tab.register(wire.Instance{ID: "w", Type: "web", Address: "10.0.0.1", Port: 80})
	b := newFakeBinder(t, "n1", tab)
	b.cutOff.Store(true)
	c, _ := newTestClient(t, urlsOf(b), func(cfg *Config) { cfg.NoStaleFallback = true })
	_, _, err := c.Services(testCtx(t))
	var apiErr *APIError
	if !errors.Is(err, ErrNoBinder) || !errors.As(err, &apiErr) || apiErr.Status != http.StatusServiceUnavailable || apiErr.Code != wire.CodeStale {
		t.Fatalf("Services = %v; want the binder's 503 stale", err)
	}
}

func hasID(list []Instance, id string) bool {
	for _, i := range list {
		if i.ID == id {
			return true
		}
	}
	return false
}
