package client

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/lieur/lieur/transport/wire"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		in      Config
		want    []string
		timeout time.Duration
		wantErr bool
	}{
		{name: "empty", in: Config{}, wantErr: true},
		{name: "blank entry", in: Config{Binders: []string{" "}}, wantErr: true},
		{
			name:    "defaults and trailing slashes",
			in:      Config{Binders: []string{"http://127.0.0.1:8001/", "https://b.example:8443//"}},
			want:    []string{"http://127.0.0.1:8001", "https://b.example:8443"},
			timeout: DefaultRequestTimeout,
		},
		{
			name:    "bare host:port gets http",
			in:      Config{Binders: []string{"127.0.0.1:8001", "localhost:8002", "[::1]:8003"}},
			want:    []string{"http://127.0.0.1:8001", "http://localhost:8002", "http://[::1]:8003"},
			timeout: DefaultRequestTimeout,
		},
		{
			name:    "duplicates dropped",
			in:      Config{Binders: []string{"127.0.0.1:8001", "http://127.0.0.1:8001/"}, RequestTimeout: time.Second},
			want:    []string{"http://127.0.0.1:8001"},
			timeout: time.Second,
		},
		{name: "bad scheme", in: Config{Binders: []string{"ftp://h:1"}}, wantErr: true},
		{name: "no host", in: Config{Binders: []string{"http://:8001"}}, wantErr: true},
		{name: "bad port", in: Config{Binders: []string{"h:99999"}}, wantErr: true},
		{name: "non-numeric port", in: Config{Binders: []string{"http://h:abc"}}, wantErr: true},
		{name: "query", in: Config{Binders: []string{"http://h:1/?x=1"}}, wantErr: true},
		{name: "negative timeout", in: Config{Binders: []string{"h:1"}, RequestTimeout: -1}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.in
			err := cfg.Validate()
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Validate() = nil, want error (binders now %q)", cfg.Binders)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate(): %v", err)
			}
			if !equalStrings(cfg.Binders, tt.want) {
				t.Errorf("Binders = %q, want %q", cfg.Binders, tt.want)
			}
			if cfg.RequestTimeout != tt.timeout {
				t.Errorf("RequestTimeout = %v, want %v", cfg.RequestTimeout, tt.timeout)
			}
		})
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestNewDoesNotAlterCallerConfig(t *testing.T) {
	binders := []string{"127.0.0.1:8001/"}
	c, err := New(Config{Binders: binders})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if binders[0] != "127.0.0.1:8001/" {
		t.Errorf("caller's slice changed to %q", binders[0])
	}
	if got := c.Binders(); !equalStrings(got, []string{"http://127.0.0.1:8001"}) {
		t.Errorf("Binders() = %q", got)
	}
}

func TestRandomChoiceCoversAllBinders(t *testing.T) {
	tab := newTable()
	bs := []*fakeBinder{newFakeBinder(t, "n1", tab), newFakeBinder(t, "n2", tab), newFakeBinder(t, "n3", tab)}
	c, att := newTestClient(t, urlsOf(bs...), nil)
	ctx := testCtx(t)

	seen := map[string]int{}
	for range 100 {
		if _, err := c.Status(ctx); err != nil {
			t.Fatalf("Status: %v", err)
		}
		got := att.take()
		if len(got) != 1 {
			t.Fatalf("healthy binders: %d attempts in one call, want 1", len(got))
		}
		seen[got[0]]++
	}
	for _, b := range bs {
		if seen[b.srv.URL] == 0 {
			t.Errorf("binder %s never chosen in 100 calls: %v", b.name, seen)
		}
	}
}

// With no binder able to serve a default read, a lookup asks once more for
// a stale answer from each binder's memory.
func TestLookupFallsBackToStale(t *testing.T) {
	tab := newTable()
	tab.register(wire.Instance{ID: "w1", Type: "web", Address: "10.0.0.1", Port: 80})
	bs := []*fakeBinder{newFakeBinder(t, "n1", tab), newFakeBinder(t, "n2", tab)}
	for _, b := range bs {
		refuse := failWith(http.StatusServiceUnavailable, wire.CodeStale)
		b.setInject(func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Query().Get("stale") == "true" {
				return false
			}
			return refuse(w, r)
		})
	}
	c, att := newTestClient(t, urlsOf(bs...), nil)
	inst, err := c.Lookup(testCtx(t), "web")
	if err != nil || inst.ID != "w1" {
		t.Fatalf("Lookup = %+v, %v; want w1 from the stale fallback", inst, err)
	}
	if got := att.take(); len(got) != 3 {
		t.Errorf("attempts %q: want both binders refused, then one stale answer", got)
	}
}

func TestEachBinderTriedOncePerCall(t *testing.T) {
	tab := newTable()
	bs := []*fakeBinder{newFakeBinder(t, "n1", tab), newFakeBinder(t, "n2", tab), newFakeBinder(t, "n3", tab)}
	for _, b := range bs {
		b.setInject(failWith(http.StatusServiceUnavailable, wire.CodeNoLeader))
	}
	c, att := newTestClient(t, urlsOf(bs...), func(cfg *Config) { cfg.NoStaleFallback = true })

	_, err := c.Lookup(testCtx(t), "web")
	if !errors.Is(err, ErrNoBinder) {
		t.Fatalf("err = %v, want ErrNoBinder", err)
	}
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusServiceUnavailable || apiErr.Code != wire.CodeNoLeader {
		t.Errorf("err = %v, want it to wrap the last 503 no_leader answer", err)
	}
	if errors.Is(err, ErrUnknownService) {
		t.Errorf("a 5xx must not read as ErrUnknownService")
	}
	got := att.take()
	seen := map[string]bool{}
	for _, b := range got {
		if seen[b] {
			t.Errorf("binder %s tried twice in one call: %q", b, got)
		}
		seen[b] = true
	}
	if len(seen) != len(bs) {
		t.Errorf("tried %q, want each of the %d binders once", got, len(bs))
	}
}

func TestFailover(t *testing.T) {
	ops := []struct {
		name string
		run  func(ctx context.Context, c *Client, tab *table) error
	}{
		{"lookup", func(ctx context.Context, c *Client, _ *table) error {
			_, err := c.Lookup(ctx, "web")
			return err
		}},
		{"services", func(ctx context.Context, c *Client, _ *table) error {
			_, _, err := c.Services(ctx)
			return err
		}},
		{"register", func(ctx context.Context, c *Client, _ *table) error {
			_, err := c.Register(ctx, Registration{Type: "api", Address: "10.0.0.9", Port: 80, ID: "api-1"})
			return err
		}},
		{"deregister", func(ctx context.Context, c *Client, tab *table) error {
			tab.register(wire.Instance{ID: "tmp", Type: "tmp", Address: "h", Port: 1})
			_, err := c.Deregister(ctx, "tmp")
			return err
		}},
	}
	faults := []struct {
		name string
		// breakBinder makes one of two binders fail and returns the URL the
		// client should use for it.
		breakBinder func(t *testing.T, b *fakeBinder) string
		// forWrites: whether non-idempotent writes may fail over from it.
		nonIdempotentOK bool
	}{
		{"500", func(t *testing.T, b *fakeBinder) string {
			b.setInject(failWith(http.StatusInternalServerError, ""))
			return b.srv.URL
		}, true},
		{"503 no_leader", func(t *testing.T, b *fakeBinder) string {
			b.setInject(failWith(http.StatusServiceUnavailable, wire.CodeNoLeader))
			return b.srv.URL
		}, true},
		{"connection refused", func(t *testing.T, b *fakeBinder) string {
			return deadURL(t)
		}, true},
		{"hang-up after request", func(t *testing.T, b *fakeBinder) string {
			b.setInject(hangUp)
			return b.srv.URL
		}, false},
	}
	for _, f := range faults {
		for _, op := range ops {
			if op.name == "deregister" && !f.nonIdempotentOK {
				continue // covered by TestNonIdempotentWritesNotResent
			}
			t.Run(f.name+"/"+op.name, func(t *testing.T) {
				tab := newTable()
				tab.register(wire.Instance{ID: "web-1", Type: "web", Address: "10.0.0.1", Port: 80})
				good := newFakeBinder(t, "good", tab)
				bad := newFakeBinder(t, "bad", tab)
				badURL := f.breakBinder(t, bad)
				c, att := newTestClient(t, []string{good.srv.URL, badURL}, nil)
				ctx := testCtx(t)

				badTried := 0
				for i := range 30 {
					if err := op.run(ctx, c, tab); err != nil {
						t.Fatalf("call %d: %v", i, err)
					}
					for _, b := range att.take() {
						if b == badURL {
							badTried++
						}
					}
				}
				// Each call picks the bad binder first with probability 1/2.
				if badTried == 0 {
					t.Errorf("the failing binder was never tried in 30 calls")
				}
			})
		}
	}
}

func TestClientErrorsAreFinal(t *testing.T) {
	tests := []struct {
		name     string
		run      func(ctx context.Context, c *Client) error
		status   int
		sentinel error
	}{
		{"lookup unknown type", func(ctx context.Context, c *Client) error {
			_, err := c.Lookup(ctx, "nope")
			return err
		}, 404, ErrUnknownService},
		{"resolve unknown type", func(ctx context.Context, c *Client) error {
			_, err := c.Resolve(ctx, "nope")
			return err
		}, 404, ErrUnknownService},
		{"services of unknown type", func(ctx context.Context, c *Client) error {
			_, _, err := c.ServicesOf(ctx, "nope")
			return err
		}, 404, ErrUnknownService},
		{"deregister unknown id", func(ctx context.Context, c *Client) error {
			_, err := c.Deregister(ctx, "nope")
			return err
		}, 404, ErrUnknownID},
		{"report unknown id", func(ctx context.Context, c *Client) error {
			_, err := c.ReportDown(ctx, Instance{ID: "nope", Type: "web"})
			return err
		}, 404, ErrUnknownID},
		{"register invalid", func(ctx context.Context, c *Client) error {
			_, err := c.Register(ctx, Registration{Type: "web", Address: "h", Port: -1})
			return err
		}, 400, nil},
		{"join invalid", func(ctx context.Context, c *Client) error {
			return c.Join(ctx, "", wire.JoinRequest{})
		}, 400, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := newTable()
			bs := []*fakeBinder{newFakeBinder(t, "n1", tab), newFakeBinder(t, "n2", tab), newFakeBinder(t, "n3", tab)}
			c, att := newTestClient(t, urlsOf(bs...), nil)

			err := tt.run(testCtx(t), c)
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.Status != tt.status {
				t.Fatalf("err = %v, want *APIError with status %d", err, tt.status)
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("err = %v, want it to match %v", err, tt.sentinel)
			}
			for _, other := range []error{ErrUnknownService, ErrUnknownID, ErrNoBinder, ErrOutcomeUnknown} {
				if other != tt.sentinel && errors.Is(err, other) {
					t.Errorf("err = %v matches %v too", err, other)
				}
			}
			if n := att.count(); n != 1 {
				t.Errorf("%d attempts, want 1 (a 4xx is final)", n)
			}
		})
	}
}

// A deregistration carries a request id, the same on every attempt, which
// makes a resend after an unknown outcome safe.
func TestDeregisterResendsWithOneRequestID(t *testing.T) {
	tab := newTable()
	tab.register(wire.Instance{ID: "web-1", Type: "web", Address: "10.0.0.1", Port: 80})
	bs := []*fakeBinder{newFakeBinder(t, "n1", tab), newFakeBinder(t, "n2", tab)}
	var mu sync.Mutex
	var ids []string
	for _, b := range bs {
		b.setInject(func(w http.ResponseWriter, r *http.Request) bool {
			mu.Lock()
			ids = append(ids, r.Header.Get(wire.HeaderRequestID))
			first := len(ids) == 1
			mu.Unlock()
			if first {
				return hangUp(w, r)
			}
			return false
		})
	}
	c, att := newTestClient(t, urlsOf(bs...), nil)
	if _, err := c.Deregister(testCtx(t), "web-1"); err != nil {
		t.Fatalf("Deregister after a hang-up: %v", err)
	}
	if n := att.count(); n != 2 {
		t.Fatalf("%d attempts, want 2", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 2 || ids[0] == "" || ids[0] != ids[1] {
		t.Errorf("request ids %q: want one non-empty id on both attempts", ids)
	}
}

func TestNonIdempotentWritesNotResent(t *testing.T) {
	writes := []struct {
		name string
		run  func(ctx context.Context, c *Client) error
	}{
		{"report", func(ctx context.Context, c *Client) error {
			_, err := c.ReportDown(ctx, Instance{ID: "web-1", Type: "web"})
			return err
		}},
	}
	faults := []struct {
		name   string
		inject func(http.ResponseWriter, *http.Request) bool
	}{
		{"503 outcome_unknown", failWith(http.StatusServiceUnavailable, wire.CodeOutcomeUnknown)},
		{"500 outcome_unknown", failWith(http.StatusInternalServerError, wire.CodeOutcomeUnknown)},
		{"hang-up", hangUp},
		{"attempt timeout", stall},
	}
	for _, f := range faults {
		for _, w := range writes {
			t.Run(f.name+"/"+w.name, func(t *testing.T) {
				tab := newTable()
				tab.register(wire.Instance{ID: "web-1", Type: "web", Address: "10.0.0.1", Port: 80})
				bs := []*fakeBinder{newFakeBinder(t, "n1", tab), newFakeBinder(t, "n2", tab)}
				for _, b := range bs {
					b.setInject(f.inject)
				}
				c, att := newTestClient(t, urlsOf(bs...), func(cfg *Config) {
					cfg.RequestTimeout = 200 * time.Millisecond
				})

				err := w.run(testCtx(t), c)
				if !errors.Is(err, ErrOutcomeUnknown) {
					t.Fatalf("err = %v, want ErrOutcomeUnknown", err)
				}
				if errors.Is(err, ErrNoBinder) {
					t.Errorf("err = %v, must not claim every binder failed", err)
				}
				if n := att.count(); n != 1 {
					t.Errorf("%d attempts, want 1 (must not resend)", n)
				}
			})
		}
	}
}

func TestRegisterRetriesOnOutcomeUnknown(t *testing.T) {
	faults := []struct {
		name   string
		inject func(http.ResponseWriter, *http.Request) bool
	}{
		{"503 outcome_unknown", failWith(http.StatusServiceUnavailable, wire.CodeOutcomeUnknown)},
		{"hang-up", hangUp},
		{"attempt timeout", stall},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			tab := newTable()
			good := newFakeBinder(t, "good", tab)
			bad := newFakeBinder(t, "bad", tab)
			bad.setInject(f.inject)
			c, att := newTestClient(t, urlsOf(good, bad), func(cfg *Config) {
				cfg.RequestTimeout = 200 * time.Millisecond
			})
			ctx := testCtx(t)
			sawRetry := false
			for i := range 20 {
				reg, err := c.Register(ctx, Registration{Type: "web", Address: "10.0.0.1", Port: 80})
				if err != nil {
					t.Fatalf("register %d: %v", i, err)
				}
				if !tab.has(reg.ID()) {
					t.Fatalf("registration %q not in the table", reg.ID())
				}
				if len(att.take()) == 2 {
					sawRetry = true
				}
			}
			if !sawRetry {
				t.Errorf("no call went to the failing binder first in 20 calls")
			}
		})
	}
}

func TestStatusAndCluster(t *testing.T) {
	tab := newTable()
	n1, n2 := newFakeBinder(t, "n1", tab), newFakeBinder(t, "n2", tab)
	c, att := newTestClient(t, urlsOf(n1), nil)
	ctx := testCtx(t)

	st, err := c.StatusOf(ctx, n2.srv.URL+"/")
	if err != nil || st.ID != "n2" {
		t.Fatalf("StatusOf(n2) = %+v, %v; want n2's status", st, err)
	}
	if got := att.take(); len(got) != 1 || got[0] != n2.srv.URL {
		t.Errorf("StatusOf asked %q, want only %s", got, n2.srv.URL)
	}

	n2.setInject(failWith(500, ""))
	if _, err := c.StatusOf(ctx, n2.srv.URL); !errors.Is(err, ErrNoBinder) {
		t.Errorf("StatusOf a failing node: err = %v, want ErrNoBinder", err)
	}
	if got := att.take(); len(got) != 1 {
		t.Errorf("StatusOf must not fail over, asked %q", got)
	}

	cl, err := c.Cluster(ctx)
	if err != nil || cl.Leader != "n1" || len(cl.Members) != 1 {
		t.Errorf("Cluster() = %+v, %v", cl, err)
	}
	if err := c.Join(ctx, n1.srv.URL, wire.JoinRequest{ID: "n4", RaftAddr: "h:1", HTTPAddr: "h:2"}); err != nil {
		t.Errorf("Join: %v", err)
	}
	if err := c.RemoveMember(ctx, "n4"); err != nil {
		t.Errorf("RemoveMember: %v", err)
	}
	if _, err := c.StatusOf(ctx, "ftp://x"); err == nil {
		t.Errorf("StatusOf a malformed URL: no error")
	}
}

func TestCallsAfterCloseFail(t *testing.T) {
	tab := newTable()
	c, att := newTestClient(t, urlsOf(newFakeBinder(t, "n1", tab)), nil)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(testCtx(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("err = %v, want ErrClosed", err)
	}
	if n := att.count(); n != 0 {
		t.Errorf("%d attempts after Close", n)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCanceledContext(t *testing.T) {
	tab := newTable()
	c, att := newTestClient(t, urlsOf(newFakeBinder(t, "n1", tab)), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Lookup(ctx, "web"); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if n := att.count(); n != 0 {
		t.Errorf("%d attempts with a dead context", n)
	}
}

func TestInstanceAddr(t *testing.T) {
	tests := []struct {
		inst Instance
		want string
	}{
		{Instance{Address: "10.0.0.1", Port: 80}, "10.0.0.1:80"},
		{Instance{Address: "::1", Port: 8080}, "[::1]:8080"},
		{Instance{Address: "db.internal", Port: 5432}, "db.internal:5432"},
	}
	for _, tt := range tests {
		if got := tt.inst.Addr(); got != tt.want {
			t.Errorf("Addr() = %q, want %q", got, tt.want)
		}
	}
}
