package client

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/lieur/lieur/transport/wire"
)

func TestResolveCaches(t *testing.T) {
	tab := newTable()
	tab.register(wire.Instance{ID: "web-1", Type: "web", Address: "10.0.0.1", Port: 80, Meta: map[string]string{"zone": "a"}})
	tab.register(wire.Instance{ID: "web-2", Type: "web", Address: "10.0.0.2", Port: 80})
	c, att := newTestClient(t, urlsOf(newFakeBinder(t, "n1", tab), newFakeBinder(t, "n2", tab)), nil)
	ctx := testCtx(t)

	first, err := c.Resolve(ctx, "web")
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if n := len(att.take()); n != 1 {
		t.Fatalf("first Resolve made %d requests, want 1", n)
	}
	first.Meta = map[string]string{"scribbled": "yes"} // must not reach the cache
	for range 5 {
		again, err := c.Resolve(ctx, "web")
		if err != nil {
			t.Fatalf("cached Resolve: %v", err)
		}
		if again.ID != first.ID || again.Meta["scribbled"] != "" {
			t.Fatalf("cached Resolve = %+v, want the first answer %s unchanged", again, first.ID)
		}
	}
	if n := att.count(); n != 0 {
		t.Errorf("cached Resolves made %d requests, want 0", n)
	}

	c.Forget("web")
	if _, err := c.Resolve(ctx, "web"); err != nil {
		t.Fatalf("Resolve after Forget: %v", err)
	}
	if n := att.count(); n != 1 {
		t.Errorf("Resolve after Forget made %d requests, want 1", n)
	}
}

func TestResolveUnknownIsNotCached(t *testing.T) {
	tab := newTable()
	c, att := newTestClient(t, urlsOf(newFakeBinder(t, "n1", tab)), nil)
	ctx := testCtx(t)

	if _, err := c.Resolve(ctx, "db"); !errors.Is(err, ErrUnknownService) {
		t.Fatalf("err = %v, want ErrUnknownService", err)
	}
	tab.register(wire.Instance{ID: "db-1", Type: "db", Address: "10.0.0.5", Port: 5432})
	inst, err := c.Resolve(ctx, "db")
	if err != nil || inst.ID != "db-1" || inst.Addr() != "10.0.0.5:5432" {
		t.Fatalf("Resolve = %+v, %v; want db-1", inst, err)
	}
	if n := att.count(); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

func TestReportDownDropsCache(t *testing.T) {
	tests := []struct {
		name        string
		verdict     string
		report      func(inst Instance) Instance
		wantErr     error
		wantVerdict string
	}{
		{"removed", wire.VerdictRemoved, func(i Instance) Instance { return i }, nil, wire.VerdictRemoved},
		{"alive", wire.VerdictAlive, func(i Instance) Instance { return i }, nil, wire.VerdictAlive},
		{"unknown id", wire.VerdictRemoved, func(i Instance) Instance { i.ID = "gone"; return i }, ErrUnknownID, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := newTable()
			tab.verdict = tt.verdict
			tab.register(wire.Instance{ID: "web-1", Type: "web", Address: "10.0.0.1", Port: 80})
			tab.register(wire.Instance{ID: "web-2", Type: "web", Address: "10.0.0.2", Port: 80})
			c, att := newTestClient(t, urlsOf(newFakeBinder(t, "n1", tab)), nil)
			ctx := testCtx(t)

			inst, err := c.Resolve(ctx, "web")
			if err != nil {
				t.Fatal(err)
			}
			verdict, err := c.ReportDown(ctx, tt.report(inst))
			if !errors.Is(err, tt.wantErr) || verdict != tt.wantVerdict {
				t.Fatalf("ReportDown = %q, %v; want %q, %v", verdict, err, tt.wantVerdict, tt.wantErr)
			}
			if tt.verdict == wire.VerdictRemoved && tt.wantErr == nil && tab.has(inst.ID) {
				t.Errorf("%s still registered after a removed verdict", inst.ID)
			}
			att.take()
			next, err := c.Resolve(ctx, "web")
			if err != nil {
				t.Fatalf("Resolve after report: %v", err)
			}
			if n := att.count(); n != 1 {
				t.Errorf("Resolve after ReportDown made %d requests, want 1 (cache dropped)", n)
			}
			if tt.verdict == wire.VerdictRemoved && tt.wantErr == nil && next.ID == inst.ID {
				t.Errorf("Resolve after removal returned the removed %s", inst.ID)
			}
		})
	}
}

func TestResolveWait(t *testing.T) {
	t.Run("returns as soon as the service appears", func(t *testing.T) {
		tab := newTable()
		c, att := newTestClient(t, urlsOf(newFakeBinder(t, "n1", tab)), nil)
		ctx := testCtx(t)

		type result struct {
			inst Instance
			err  error
		}
		done := make(chan result, 1)
		start := time.Now()
		go func() {
			inst, err := c.ResolveWait(ctx, "db", time.Minute)
			done <- result{inst, err}
		}()
		awaitBlocked(t, tab, "/v1/lookup/db")
		tab.register(wire.Instance{ID: "db-1", Type: "db", Address: "10.0.0.5", Port: 5432})
		select {
		case r := <-done:
			if r.err != nil || r.inst.ID != "db-1" {
				t.Fatalf("ResolveWait = %+v, %v; want db-1", r.inst, r.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("ResolveWait did not return after the service appeared")
		}
		if el := time.Since(start); el > 30*time.Second {
			t.Errorf("took %v", el)
		}
		// It went into the cache like Resolve's answers.
		att.take()
		if _, err := c.Resolve(ctx, "db"); err != nil || att.count() != 0 {
			t.Errorf("Resolve after ResolveWait: err %v, %d requests; want cached", err, att.count())
		}
	})

	t.Run("unknown after the delay", func(t *testing.T) {
		tab := newTable()
		c, _ := newTestClient(t, urlsOf(newFakeBinder(t, "n1", tab)), nil)
		const delay = 300 * time.Millisecond
		start := time.Now()
		_, err := c.ResolveWait(testCtx(t), "db", delay)
		el := time.Since(start)
		if !errors.Is(err, ErrUnknownService) {
			t.Fatalf("err = %v, want ErrUnknownService", err)
		}
		if el < delay-50*time.Millisecond {
			t.Errorf("returned after %v, before the %v delay", el, delay)
		}
	})

	t.Run("context ends first", func(t *testing.T) {
		tab := newTable()
		c, _ := newTestClient(t, urlsOf(newFakeBinder(t, "n1", tab)), nil)
		ctx, cancel := context.WithCancel(testCtx(t))
		done := make(chan error, 1)
		go func() {
			_, err := c.ResolveWait(ctx, "db", time.Minute)
			done <- err
		}()
		awaitBlocked(t, tab, "/v1/lookup/db")
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("ResolveWait ignored the context")
		}
	})

	t.Run("cached answer needs no wait", func(t *testing.T) {
		tab := newTable()
		tab.register(wire.Instance{ID: "db-1", Type: "db", Address: "10.0.0.5", Port: 5432})
		c, att := newTestClient(t, urlsOf(newFakeBinder(t, "n1", tab)), nil)
		ctx := testCtx(t)
		if _, err := c.Resolve(ctx, "db"); err != nil {
			t.Fatal(err)
		}
		att.take()
		if inst, err := c.ResolveWait(ctx, "db", time.Minute); err != nil || inst.ID != "db-1" || att.count() != 0 {
			t.Errorf("ResolveWait = %+v, %v after %d requests; want the cached db-1", inst, err, att.count())
		}
	})
}

// awaitBlocked waits until a fake binder holds a long poll on path.
func awaitBlocked(t *testing.T, tab *table, path string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case p := <-tab.waiting:
			if p == path {
				return
			}
		case <-timeout:
			t.Fatalf("no long poll on %s reached the binder", path)
		}
	}
}

func TestConcurrentResolveAndReport(t *testing.T) {
	tab := newTable()
	tab.verdict = wire.VerdictAlive
	tab.register(wire.Instance{ID: "web-1", Type: "web", Address: "10.0.0.1", Port: 80})
	tab.register(wire.Instance{ID: "web-2", Type: "web", Address: "10.0.0.2", Port: 80})
	c, _ := newTestClient(t, urlsOf(newFakeBinder(t, "n1", tab), newFakeBinder(t, "n2", tab)), nil)
	ctx := testCtx(t)

	var wg sync.WaitGroup
	errs := make(chan error, 8*50)
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				inst, err := c.Resolve(ctx, "web")
				if err != nil {
					errs <- err
					return
				}
				switch (g + i) % 10 {
				case 0:
					if _, err := c.ReportDown(ctx, inst); err != nil {
						errs <- err
					}
				case 1:
					c.Forget("web")
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
