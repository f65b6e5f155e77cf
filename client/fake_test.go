package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lieur/lieur/transport/wire"
)

// table is the replicated state a set of fake binders share, standing in for
// a Raft cluster.
type table struct {
	mu        sync.Mutex
	index     uint64
	byID      map[string]wire.Instance
	typeIndex map[string]uint64
	rr        map[string]int
	changed   chan struct{} // closed and replaced on every change
	waiting   chan string   // receives the path of every request that starts to block
	verdict   string
}

func newTable() *table {
	return &table{
		byID:      map[string]wire.Instance{},
		typeIndex: map[string]uint64{},
		rr:        map[string]int{},
		changed:   make(chan struct{}),
		waiting:   make(chan string, 100),
		verdict:   wire.VerdictRemoved,
	}
}

func (t *table) touchLocked(typ string) uint64 {
	t.index++
	t.typeIndex[typ] = t.index
	close(t.changed)
	t.changed = make(chan struct{})
	return t.index
}

func (t *table) register(in wire.Instance) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.byID[in.ID]; ok && old.Type != in.Type {
		t.touchLocked(old.Type)
	}
	t.byID[in.ID] = in
	return t.touchLocked(in.Type)
}

func (t *table) remove(id string) (uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.byID[id]
	if !ok {
		return 0, false
	}
	delete(t.byID, id)
	return t.touchLocked(old.Type), true
}

func (t *table) currentIndex() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.index
}

func (t *table) has(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.byID[id]
	return ok
}

// ofTypeLocked returns typ's instances sorted by id.
func (t *table) ofTypeLocked(typ string) []wire.Instance {
	var out []wire.Instance
	for _, in := range t.byID {
		if typ == "" || in.Type == typ {
			out = append(out, in)
		}
	}
	slices.SortFunc(out, func(a, b wire.Instance) int {
		if a.Type != b.Type {
			return cmpString(a.Type, b.Type)
		}
		return cmpString(a.ID, b.ID)
	})
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// await blocks until cond holds (it is called with t.mu held), wait runs
// out or ctx ends, like the server's long polls. It returns with t.mu held.
func (t *table) await(ctx context.Context, path string, wait time.Duration, cond func() bool) {
	t.mu.Lock()
	if cond() || wait <= 0 {
		return
	}
	select {
	case t.waiting <- path:
	default:
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for !cond() {
		ch := t.changed
		t.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			t.mu.Lock()
			return
		case <-ctx.Done():
			t.mu.Lock()
			return
		}
		t.mu.Lock()
	}
}

// fakeBinder is one binder node over a shared table. inject, when set, may
// answer a request in its place (failure injection).
type fakeBinder struct {
	name   string
	tab    *table
	srv    *httptest.Server
	hits   atomic.Int64
	inject atomic.Pointer[func(http.ResponseWriter, *http.Request) bool]
	// cutOff makes default reads answer 503 stale, as a binder that has
	// not heard from a leader for its max staleness; ?stale=true reads
	// still answer.
	cutOff atomic.Bool
	// frozen, when set, is the table as this binder last applied it: it
	// lags, answers reads from it, and refuses a min_index beyond it.
	frozen atomic.Pointer[frozenTable]
}

type frozenTable struct {
	index     uint64
	byID      map[string]wire.Instance
	typeIndex map[string]uint64
}

// freeze makes the binder stop applying: it keeps the table as it is now.
func (b *fakeBinder) freeze() {
	t := b.tab
	t.mu.Lock()
	defer t.mu.Unlock()
	f := &frozenTable{index: t.index, byID: map[string]wire.Instance{}, typeIndex: map[string]uint64{}}
	for k, v := range t.byID {
		f.byID[k] = v
	}
	for k, v := range t.typeIndex {
		f.typeIndex[k] = v
	}
	b.frozen.Store(f)
}

// gate applies what the real server checks before any handler: a body must
// be JSON (415), and a read's mode: ?stale=true, or the default refused
// when cut off; then ?min_index against what this binder applied.
func (b *fakeBinder) gate(w http.ResponseWriter, r *http.Request) bool {
	if r.ContentLength != 0 && r.Header.Get("Content-Type") != "application/json" {
		writeJSON(w, http.StatusUnsupportedMediaType, wire.Error{Error: "a request body must be JSON"})
		return false
	}
	if r.Method != http.MethodGet {
		return true
	}
	q := r.URL.Query()
	if b.cutOff.Load() && q.Get("stale") != "true" {
		writeJSON(w, http.StatusServiceUnavailable, wire.Error{Error: "no recent contact with a leader", Code: wire.CodeStale})
		return false
	}
	if raw := q.Get(wire.QueryMinIndex); raw != "" {
		min, _ := strconv.ParseUint(raw, 10, 64)
		applied := b.tab.currentIndex()
		if f := b.frozen.Load(); f != nil {
			applied = f.index
		}
		if applied < min {
			writeJSON(w, http.StatusServiceUnavailable, wire.Error{Error: "behind", Code: wire.CodeBehind})
			return false
		}
	}
	return true
}

func newFakeBinder(t testing.TB, name string, tab *table) *fakeBinder {
	t.Helper()
	b := &fakeBinder{name: name, tab: tab}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/services", b.register)
	mux.HandleFunc("DELETE /v1/services/{id}", b.deregister)
	mux.HandleFunc("GET /v1/lookup/{type}", b.lookup)
	mux.HandleFunc("GET /v1/services", b.services)
	mux.HandleFunc("GET /v1/services/{type}", b.services)
	mux.HandleFunc("POST /v1/reports", b.report)
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, wire.Status{ID: b.name, State: "Follower"})
	})
	mux.HandleFunc("GET /v1/cluster", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, wire.ClusterResponse{Leader: "n1", Members: []wire.Member{{ID: "n1", Voter: true}}})
	})
	mux.HandleFunc("POST /v1/cluster/join", func(w http.ResponseWriter, r *http.Request) {
		var req wire.JoinRequest
		if json.NewDecoder(r.Body).Decode(&req) != nil || req.ID == "" {
			writeJSON(w, 400, wire.Error{Error: "bad join"})
			return
		}
		writeJSON(w, 200, struct{}{})
	})
	mux.HandleFunc("DELETE /v1/cluster/members/{id}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, struct{}{})
	})
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		if f := b.inject.Load(); f != nil && (*f)(w, r) {
			return
		}
		if !b.gate(w, r) {
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *fakeBinder) setInject(f func(http.ResponseWriter, *http.Request) bool) {
	b.inject.Store(&f)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func parseWait(r *http.Request) time.Duration {
	d, _ := time.ParseDuration(r.URL.Query().Get("wait"))
	return d
}

func (b *fakeBinder) register(w http.ResponseWriter, r *http.Request) {
	var req wire.RegisterRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Type == "" || req.Port <= 0 {
		writeJSON(w, 400, wire.Error{Error: "invalid registration"})
		return
	}
	if req.ID == "" {
		req.ID = fmt.Sprintf("%s-%s-%d", req.Type, req.Address, req.Port)
	}
	idx := b.tab.register(wire.Instance{ID: req.ID, Type: req.Type, Address: req.Address, Port: req.Port, Meta: req.Meta})
	writeJSON(w, 200, wire.RegisterResponse{ID: req.ID, Index: idx})
}

func (b *fakeBinder) deregister(w http.ResponseWriter, r *http.Request) {
	idx, ok := b.tab.remove(r.PathValue("id"))
	if !ok {
		writeJSON(w, 404, wire.Error{Error: "unknown service id"})
		return
	}
	writeJSON(w, 200, wire.IndexResponse{Index: idx})
}

func (b *fakeBinder) lookup(w http.ResponseWriter, r *http.Request) {
	typ := r.PathValue("type")
	if f := b.frozen.Load(); f != nil {
		insts := f.ofType(typ)
		if len(insts) == 0 {
			writeJSON(w, 404, wire.Error{Error: "unknown service type " + strconv.Quote(typ)})
			return
		}
		writeJSON(w, 200, insts[0])
		return
	}
	t := b.tab
	t.await(r.Context(), r.URL.Path, parseWait(r), func() bool { return len(t.ofTypeLocked(typ)) > 0 })
	insts := t.ofTypeLocked(typ)
	if len(insts) == 0 {
		t.mu.Unlock()
		writeJSON(w, 404, wire.Error{Error: "unknown service type " + strconv.Quote(typ)})
		return
	}
	inst := insts[t.rr[typ]%len(insts)]
	t.rr[typ]++
	t.mu.Unlock()
	writeJSON(w, 200, inst)
}

func (f *frozenTable) ofType(typ string) []wire.Instance {
	t := &table{byID: f.byID}
	return t.ofTypeLocked(typ)
}

func (b *fakeBinder) services(w http.ResponseWriter, r *http.Request) {
	typ := r.PathValue("type")
	if f := b.frozen.Load(); f != nil {
		// A frozen binder has nothing new to wait for: it answers at once.
		idx := f.index
		if typ != "" {
			idx = f.typeIndex[typ]
		}
		w.Header().Set(wire.HeaderIndex, strconv.FormatUint(idx, 10))
		insts := f.ofType(typ)
		if typ != "" && len(insts) == 0 {
			writeJSON(w, 404, wire.Error{Error: "unknown service type " + strconv.Quote(typ)})
			return
		}
		if insts == nil {
			insts = []wire.Instance{}
		}
		writeJSON(w, 200, wire.ServicesResponse{Services: insts})
		return
	}
	t := b.tab
	indexOf := func() uint64 {
		if typ == "" {
			return t.index
		}
		return t.typeIndex[typ]
	}
	if q := r.URL.Query().Get("index"); q != "" {
		after, _ := strconv.ParseUint(q, 10, 64)
		t.await(r.Context(), r.URL.Path, parseWait(r), func() bool { return indexOf() > after })
	} else {
		t.mu.Lock()
	}
	insts, idx := t.ofTypeLocked(typ), indexOf()
	t.mu.Unlock()
	w.Header().Set(wire.HeaderIndex, strconv.FormatUint(idx, 10))
	if typ != "" && len(insts) == 0 {
		writeJSON(w, 404, wire.Error{Error: "unknown service type " + strconv.Quote(typ)})
		return
	}
	if insts == nil {
		insts = []wire.Instance{}
	}
	writeJSON(w, 200, wire.ServicesResponse{Services: insts})
}

func (b *fakeBinder) report(w http.ResponseWriter, r *http.Request) {
	var req wire.ReportRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.ID == "" {
		writeJSON(w, 400, wire.Error{Error: "invalid report"})
		return
	}
	if !b.tab.has(req.ID) {
		writeJSON(w, 404, wire.Error{Error: "unknown service id"})
		return
	}
	b.tab.mu.Lock()
	verdict := b.tab.verdict
	b.tab.mu.Unlock()
	if verdict == wire.VerdictRemoved {
		b.tab.remove(req.ID)
	}
	writeJSON(w, 200, wire.ReportResponse{ID: req.ID, Verdict: verdict})
}

// Failure injections.

func failWith(status int, code string) func(http.ResponseWriter, *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		writeJSON(w, status, wire.Error{Error: "injected failure", Code: code})
		return true
	}
}

// hangUp reads the request, then drops the connection without answering:
// the request arrived but its outcome is unknown to the client.
func hangUp(w http.ResponseWriter, r *http.Request) bool {
	_, _ = io.Copy(io.Discard, r.Body)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		_ = conn.Close()
	}
	return true
}

// stall answers only when the client gives up.
func stall(w http.ResponseWriter, r *http.Request) bool {
	// Only once the body is consumed does the server watch the connection
	// and notice the client leaving.
	_, _ = io.Copy(io.Discard, r.Body)
	<-r.Context().Done()
	return true
}

// deadURL returns the URL of a binder that refuses connections.
func deadURL(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	return u
}

// attempts records, concurrency-safely, the binders a client tried.
type attempts struct {
	mu   sync.Mutex
	list []string
}

func (a *attempts) record(b string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.list = append(a.list, b)
}

func (a *attempts) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.list
	a.list = nil
	return out
}

func (a *attempts) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.list)
}

// newTestClient builds a client over urls that records its attempts.
func newTestClient(t *testing.T, urls []string, mod func(*Config)) (*Client, *attempts) {
	t.Helper()
	a := &attempts{}
	cfg := Config{Binders: urls, OnRequest: a.record}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, a
}

func urlsOf(bs ...*fakeBinder) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.srv.URL
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}
