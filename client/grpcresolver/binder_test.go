package grpcresolver

// Test helpers: a real binder in this process (one Raft node with lieur's
// HTTP API) behind a front that can fail on demand, require a token and
// count the reads it is sent; and a resolver.ClientConn that records what
// a resolver tells gRPC.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/client"
	"github.com/lieur/lieur/transport/httpapi"
	"github.com/lieur/lieur/transport/raftnet"
	"github.com/lieur/lieur/transport/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testBinder is a one-node lieur cluster on loopback.
type testBinder struct {
	t    *testing.T
	node *binder.Node
	srv  *httptest.Server
	url  string
	addr string // host:port of its API

	failing atomic.Bool // answer every request 503
	token   string      // when set, required as a bearer token

	mu    sync.Mutex
	lists int // GET /v1/services/{type} without ?index=
}

func startBinder(t *testing.T, token string) *testBinder {
	t.Helper()
	stream, err := raftnet.Listen("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tb := &testBinder{t: t, addr: ln.Addr().String(), token: token}
	tb.url = "http://" + tb.addr
	peer := httpapi.NewPeerClient()
	node, err := binder.New(binder.Config{
		ID: "n1", HTTPAddr: tb.addr, DataDir: t.TempDir(),
		Peers:  []binder.PeerAddr{{ID: "n1", RaftAddr: stream.Addr().String()}},
		Stream: stream, Peer: peer, ProbeTimeout: 300 * time.Millisecond,
		Logger: hclog.New(&hclog.LoggerOptions{Name: "n1", Level: hclog.Warn}),
	})
	if err != nil {
		t.Fatal(err)
	}
	tb.node = node
	api := httpapi.NewServer(node, nil)
	tb.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tb.front(w, r, api)
	}))
	tb.srv.Listener.Close()
	tb.srv.Listener = ln
	tb.srv.Start()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = node.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = node.Close()
		tb.srv.Close()
		peer.Close()
	})
	poll(t, 20*time.Second, "the binder to lead and serve default reads", func() (bool, string) {
		st := node.Status()
		err := node.ReadAllowed()
		return st.State == "leader" && st.ClusterIDKnown && err == nil, fmt.Sprintf("%+v, reads: %v", st, err)
	})
	return tb
}

func (tb *testBinder) front(w http.ResponseWriter, r *http.Request, api http.Handler) {
	reply := func(status int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(wire.Error{Error: msg})
	}
	if tb.token != "" && r.Header.Get("Authorization") != "Bearer "+tb.token {
		reply(http.StatusUnauthorized, "test front: missing or wrong token")
		return
	}
	if tb.failing.Load() {
		reply(http.StatusServiceUnavailable, "test front: failing on purpose")
		return
	}
	if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/services/") && !r.URL.Query().Has("index") {
		tb.mu.Lock()
		tb.lists++
		tb.mu.Unlock()
	}
	api.ServeHTTP(w, r)
}

func (tb *testBinder) listCount() int {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.lists
}

// client returns a client of the binder, closed at the end of the test.
func (tb *testBinder) client() *client.Client {
	c, err := client.New(client.Config{Binders: []string{tb.url}, Token: tb.token})
	if err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Cleanup(func() { _ = c.Close() })
	return c
}

// register registers an instance of typ at 127.0.0.1:port named id,
// straight on the node (no HTTP connection to clean up).
func (tb *testBinder) register(id, typ string, port int) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := tb.node.Register(ctx, binder.Registration{ID: id, Type: typ, Address: "127.0.0.1", Port: port}); err != nil {
		tb.t.Fatalf("register %s: %v", id, err)
	}
}

func (tb *testBinder) deregister(id string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := tb.node.Deregister(ctx, id, "", nil); err != nil {
		tb.t.Fatalf("deregister %s: %v", id, err)
	}
}

// ids returns the ids the binder lists for typ.
func (tb *testBinder) ids(typ string) []string {
	list, _ := tb.node.ServicesOf(typ)
	var out []string
	for _, in := range list {
		out = append(out, in.ID)
	}
	return out
}

// recordingCC is a resolver.ClientConn that records every state and error,
// and passes them on to next when it is set (a real gRPC ClientConn).
type recordingCC struct {
	resolver.ClientConn // nil: calling anything not overridden panics
	next                resolver.ClientConn

	mu     sync.Mutex
	states []resolver.State
	errs   []error
}

// parsedConfig stands for a service config gRPC would have parsed.
type parsedConfig struct {
	serviceconfig.Config
	json string
}

func (cc *recordingCC) UpdateState(s resolver.State) error {
	cc.mu.Lock()
	cc.states = append(cc.states, s)
	cc.mu.Unlock()
	if cc.next != nil {
		return cc.next.UpdateState(s)
	}
	return nil
}

func (cc *recordingCC) ReportError(err error) {
	cc.mu.Lock()
	cc.errs = append(cc.errs, err)
	cc.mu.Unlock()
	if cc.next != nil {
		cc.next.ReportError(err)
	}
}

func (cc *recordingCC) ParseServiceConfig(js string) *serviceconfig.ParseResult {
	if cc.next != nil {
		return cc.next.ParseServiceConfig(js)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(js), &v); err != nil {
		return &serviceconfig.ParseResult{Err: err}
	}
	return &serviceconfig.ParseResult{Config: parsedConfig{json: js}}
}

func (cc *recordingCC) snapshot() ([]resolver.State, []error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return slices.Clone(cc.states), slices.Clone(cc.errs)
}

// stateIDs returns the instance ids of a state, checking that its
// addresses and endpoints agree and carry their instance.
func stateIDs(t *testing.T, s resolver.State) []string {
	t.Helper()
	if len(s.Addresses) != len(s.Endpoints) {
		t.Fatalf("%d addresses but %d endpoints", len(s.Addresses), len(s.Endpoints))
	}
	ids := []string{}
	for i, a := range s.Addresses {
		id, _, ok := InstanceOf(a)
		if !ok {
			t.Fatalf("address %v carries no instance", a)
		}
		if len(s.Endpoints[i].Addresses) != 1 || s.Endpoints[i].Addresses[0].Addr != a.Addr {
			t.Fatalf("endpoint %d is %v, address %v", i, s.Endpoints[i], a)
		}
		ids = append(ids, id)
	}
	return ids
}

// awaitIDs waits until the latest state holds exactly want (in id order).
func (cc *recordingCC) awaitIDs(t *testing.T, want ...string) resolver.State {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	var last resolver.State
	poll(t, 10*time.Second, fmt.Sprintf("a state with %v", want), func() (bool, string) {
		states, errs := cc.snapshot()
		if len(states) == 0 {
			return false, fmt.Sprintf("no state yet; errors %v", errs)
		}
		last = states[len(states)-1]
		got := stateIDs(t, last)
		return slices.Equal(got, want), fmt.Sprintf("latest %v of %d; errors %v", got, len(states), errs)
	})
	return last
}

// poll calls cond until it holds or timeout passes; cond says what it saw.
func poll(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last seen: %s", timeout, what, seen)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// build builds a resolver for target with a recordingCC; it is closed at
// the end of the test.
func build(t *testing.T, b *Builder, target string, bo resolver.BuildOptions) (*recordingCC, resolver.Resolver) {
	t.Helper()
	cc := &recordingCC{}
	r, err := b.Build(parseTarget(t, target), cc, bo)
	if err != nil {
		t.Fatalf("Build(%s): %v", target, err)
	}
	t.Cleanup(r.Close)
	return cc, r
}

func parseTarget(t *testing.T, target string) resolver.Target {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("parse %q: %v", target, err)
	}
	return resolver.Target{URL: *u}
}

func newBuilder(t *testing.T, cfg client.Config, opts ...Option) *Builder {
	t.Helper()
	b, err := NewBuilder(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// deadBinder is a loopback URL where nothing listens.
func deadBinder(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}
