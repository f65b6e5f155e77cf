package client

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lieur/lieur/transport/wire"
)

// recv returns the next list from ch, failing t after a deadline.
func recv(t *testing.T, ch <-chan []Instance) []Instance {
	t.Helper()
	select {
	case l, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no list from the watch")
	}
	return nil
}

func ids(l []Instance) []string {
	out := []string{}
	for _, in := range l {
		out = append(out, in.ID)
	}
	return out
}

// awaitClosed waits for ch to be closed, draining it.
func awaitClosed(t *testing.T, ch <-chan []Instance) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("watch channel not closed")
		}
	}
}

func TestWatchDeliversChanges(t *testing.T) {
	tab := newTable()
	tab.register(wire.Instance{ID: "web-1", Type: "web", Address: "10.0.0.1", Port: 80})
	tab.register(wire.Instance{ID: "other", Type: "db", Address: "10.0.0.9", Port: 1})
	c, _ := newTestClient(t, []string{deadURL(t), newFakeBinder(t, "n1", tab).srv.URL}, nil)
	ctx, cancel := context.WithCancel(testCtx(t))
	ch := c.Watch(ctx, "web")

	if got := ids(recv(t, ch)); !equalStrings(got, []string{"web-1"}) {
		t.Fatalf("first list %q, want the current one", got)
	}

	awaitBlocked(t, tab, "/v1/services/web")
	tab.register(wire.Instance{ID: "web-2", Type: "web", Address: "10.0.0.2", Port: 80})
	if got := ids(recv(t, ch)); !equalStrings(got, []string{"web-1", "web-2"}) {
		t.Fatalf("after a registration: %q", got)
	}

	// Emptying the type turns the answer into a 404: the empty list.
	tab.remove("web-1")
	tab.remove("web-2")
	for {
		l := recv(t, ch)
		if len(l) == 0 {
			if l == nil {
				t.Errorf("empty type sent as nil, want an empty slice")
			}
			break
		}
		if got := ids(l); !equalStrings(got, []string{"web-2"}) {
			t.Fatalf("while emptying: %q", got)
		}
	}

	awaitBlocked(t, tab, "/v1/services/web")
	tab.register(wire.Instance{ID: "web-3", Type: "web", Address: "10.0.0.3", Port: 80})
	if got := ids(recv(t, ch)); !equalStrings(got, []string{"web-3"}) {
		t.Fatalf("after the type came back: %q", got)
	}

	cancel()
	awaitClosed(t, ch)
	verifyNoWatchers(t)
}

func TestWatchUnknownTypeStartsEmpty(t *testing.T) {
	tab := newTable()
	c, _ := newTestClient(t, urlsOf(newFakeBinder(t, "n1", tab)), nil)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	ch := c.Watch(ctx, "db")
	if l := recv(t, ch); l == nil || len(l) != 0 {
		t.Fatalf("first list %v, want empty", l)
	}
	awaitBlocked(t, tab, "/v1/services/db")
	tab.register(wire.Instance{ID: "db-1", Type: "db", Address: "h", Port: 1})
	if got := ids(recv(t, ch)); !equalStrings(got, []string{"db-1"}) {
		t.Fatalf("%q", got)
	}
	cancel()
	awaitClosed(t, ch)
}

func TestWatchNeverRepeatsAnIndex(t *testing.T) {
	// A binder that ignores ?index= and ?wait= answers at once with the
	// same index every time.
	var hits atomic.Int64
	tab := newTable()
	b := newFakeBinder(t, "n1", tab)
	b.setInject(func(w http.ResponseWriter, r *http.Request) bool {
		hits.Add(1)
		w.Header().Set(wire.HeaderIndex, strconv.Itoa(7))
		writeJSON(w, 200, wire.ServicesResponse{Services: []wire.Instance{{ID: "web-1", Type: "web"}}})
		return true
	})
	c, _ := newTestClient(t, urlsOf(b), nil)
	ctx, cancel := context.WithCancel(testCtx(t))
	ch := c.Watch(ctx, "web")
	recv(t, ch)
	eventually(t, "repeated queries", func() bool { return hits.Load() >= 4 })
	select {
	case l := <-ch:
		t.Fatalf("sent %v again at the same index", ids(l))
	default:
	}
	cancel()
	awaitClosed(t, ch)
}

func TestWatchSurvivesFailures(t *testing.T) {
	tab := newTable()
	tab.register(wire.Instance{ID: "web-1", Type: "web", Address: "10.0.0.1", Port: 80})
	b := newFakeBinder(t, "n1", tab)
	var failing atomic.Bool
	failing.Store(true)
	var failed atomic.Int64
	b.setInject(func(w http.ResponseWriter, r *http.Request) bool {
		if failing.Load() {
			failed.Add(1)
			writeJSON(w, 503, wire.Error{Error: "no leader", Code: wire.CodeNoLeader})
			return true
		}
		return false
	})
	c, _ := newTestClient(t, urlsOf(b), nil)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	ch := c.Watch(ctx, "web")
	eventually(t, "retries", func() bool { return failed.Load() >= 3 })
	failing.Store(false)
	if got := ids(recv(t, ch)); !equalStrings(got, []string{"web-1"}) {
		t.Fatalf("%q", got)
	}
	cancel()
	awaitClosed(t, ch)
}

func TestWatchEndsWithClient(t *testing.T) {
	tab := newTable()
	c, _ := newTestClient(t, urlsOf(newFakeBinder(t, "n1", tab)), nil)
	ch := c.Watch(context.Background(), "web")
	recv(t, ch)
	awaitBlocked(t, tab, "/v1/services/web")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Close waits for the watch, so the channel is already closed.
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("list received after Close")
		}
	default:
		t.Fatal("channel still open after Close returned")
	}
	verifyNoWatchers(t)

	if _, ok := <-c.Watch(context.Background(), "web"); ok {
		t.Error("Watch on a closed client sent a list")
	}
}

func TestWatchEndsWhileReceiverIsAway(t *testing.T) {
	tab := newTable()
	tab.register(wire.Instance{ID: "web-1", Type: "web", Address: "10.0.0.1", Port: 80})
	b := newFakeBinder(t, "n1", tab)
	c, _ := newTestClient(t, urlsOf(b), nil)
	ctx, cancel := context.WithCancel(testCtx(t))
	c.Watch(ctx, "web") // never read
	eventually(t, "first query", func() bool { return b.hits.Load() >= 1 })
	cancel()
	verifyNoWatchers(t)
}

func TestBackoffBounds(t *testing.T) {
	for n := 1; n <= 20; n++ {
		d := backoff(n)
		if d <= 0 || d > time.Second {
			t.Errorf("backoff(%d) = %v, want within (0, 1s]", n, d)
		}
	}
}
