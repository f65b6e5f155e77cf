package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/ui"
	"github.com/lieur/lieur/transport/wire"
)

// fakeRing serves GET /v1/events as a binder does (events above ?index=,
// newest first, at most ?limit=, blocking while there is none), from a
// history the test writes, and records every request's query. It lets a
// test make more events arrive between two of the page's requests than
// its first load asked for, and drop events the page has not seen, which
// a real binder does only under a load no test can time.
type fakeRing struct {
	mu      sync.Mutex
	events  []wire.Event // oldest first
	oldest  uint64
	changed chan struct{}
	queries []string
}

func newFakeRing() *fakeRing { return &fakeRing{changed: make(chan struct{})} }

// set replaces the history with the events from..to and the oldest index
// the ring holds every event from, and wakes waiting requests.
func (f *fakeRing) set(from, to, oldest uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = f.events[:0]
	for i := from; i <= to; i++ {
		f.events = append(f.events, wire.Event{Index: i, Time: "2026-12-02T10:00:00.000Z", Kind: wire.EventRegistered,
			ID: fmt.Sprintf("e-%d", i), Type: "echo", Address: "127.0.0.1", Port: 1})
	}
	f.oldest = oldest
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeRing) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.queries...)
}

func (f *fakeRing) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	f.queries = append(f.queries, r.URL.RawQuery)
	f.mu.Unlock()
	limit := 1 << 30
	if q.Has("limit") {
		limit, _ = strconv.Atoi(q.Get("limit"))
	}
	var after uint64
	if q.Has("index") {
		after, _ = strconv.ParseUint(q.Get("index"), 10, 64)
	}
	wait, _ := time.ParseDuration(q.Get("wait"))
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	for {
		f.mu.Lock()
		var newest uint64
		if n := len(f.events); n > 0 {
			newest = f.events[n-1].Index
		}
		if !q.Has("index") || newest > after {
			resp := wire.EventsResponse{Index: newest, Oldest: f.oldest, Events: []wire.Event{}}
			for i := len(f.events) - 1; i >= 0 && f.events[i].Index > after && len(resp.Events) < limit; i-- {
				resp.Events = append(resp.Events, f.events[i])
			}
			f.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set(wire.HeaderIndex, strconv.FormatUint(newest, 10))
			_ = json.NewEncoder(w).Encode(resp)
			return
		}
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(wire.EventsResponse{Index: newest, Oldest: f.oldest, Events: []wire.Event{}})
			return
		}
	}
}

// TestUIChangesSeeEveryEventAndSayWhenSomeWereDropped: the changes view
// asks for the newest 200 events on its first load only; when 300 arrive
// between two of its requests it shows all 300 (a limit on the later
// requests would drop the oldest 100 without a word); and when the
// binder's ring dropped events the page never saw (its last index is
// below oldest-1), the page says so rather than show a history with a
// hole in it.
func TestUIChangesSeeEveryEventAndSayWhenSomeWereDropped(t *testing.T) {
	if _, why := findChromium(); why != "" {
		t.Skip(why)
	}
	ring := newFakeRing()
	ring.set(1, 300, 1)
	files := ui.New()
	mux := http.NewServeMux()
	mux.Handle("GET /v1/events", ring)
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"fake","state":"leader"}`))
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ui.Owns(r.URL.Path) {
			files.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	// Closed after the browser (cleanups run last first), whose blocking
	// request would otherwise hold Close up.
	t.Cleanup(srv.Close)

	b := newBrowser(t)
	rows := `document.querySelectorAll('table.events tbody tr').length`
	b.do("open the changes view", chromedp.Navigate(srv.URL+"/ui/#/changes"))
	b.waitJS("the newest 200 events", rows+` === 200 && !!document.querySelector('table.events tr[data-index="101"]')`, 10*time.Second)
	queries := ring.seen()
	require.NotEmpty(t, queries)
	assert.Equal(t, "limit=200", queries[0], "the first load asks for the newest 200")

	// 300 events arrive at once, more than the first load's limit.
	ring.set(1, 600, 1)
	b.waitJS("all 300 new events", rows+` === 500 && !!document.querySelector('table.events tr[data-index="301"]') &&
		!!document.querySelector('table.events tr[data-index="600"]')`, 10*time.Second)
	for _, q := range ring.seen()[1:] {
		assert.NotContains(t, q, "limit", "a later request must not cut what arrived: %s", q)
	}
	assert.False(t, evalIn[bool](b, `!!document.getElementById('changes-gap')`), "nothing was dropped: no gap claimed")

	// The ring drops events 601..900 before the page asks again: it holds
	// 901..1000, every event from 901 on.
	ring.set(901, 1000, 901)
	b.waitJS("the dropped events named", `document.getElementById('changes-gap')?.textContent.includes("dropped from this binder's ring") &&
		!!document.querySelector('table.events tr[data-index="1000"]')`, 10*time.Second)
	assert.Contains(t, evalIn[string](b, `document.getElementById('changes-gap').textContent`), "index 601 to 900")
	b.shot("changes-gap")
	assert.Empty(t, b.errors(false), "console errors")
}
