package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/lieur/lieur/transport/wire"
)

// readable applies a read's consistency mode (?consistent=true,
// ?stale=true, or the default), then ?min_index, and sets the freshness
// headers. It answers the request itself when the read cannot be served.
func (s *Server) readable(w http.ResponseWriter, r *http.Request) bool {
	q := r.URL.Query()
	consistent, cerr := boolParam(q.Get("consistent"))
	stale, serr := boolParam(q.Get("stale"))
	switch {
	case cerr != nil || serr != nil:
		writeError(w, http.StatusBadRequest, "", "consistent and stale take true or false")
		return false
	case consistent && stale:
		writeError(w, http.StatusBadRequest, "", "consistent and stale are exclusive")
		return false
	case consistent:
		if err := s.b.ConsistentRead(r.Context()); err != nil {
			s.fail(w, r, err)
			return false
		}
	case !stale:
		// Set first: a refusal says how long ago the node heard from a
		// leader too.
		s.setLastContact(w)
		if err := s.b.ReadAllowed(); err != nil {
			s.fail(w, r, fmt.Errorf("%w; ?stale=true reads this node's table anyway", err))
			return false
		}
	}
	s.setLastContact(w)
	return s.caughtUpTo(w, r)
}

func (s *Server) setLastContact(w http.ResponseWriter) {
	if lc := s.b.LastContact(); lc >= 0 {
		w.Header().Set(wire.HeaderLastContact, strconv.FormatInt(lc.Milliseconds(), 10))
	}
}

func millis(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return d.Milliseconds()
}

func boolParam(v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	return strconv.ParseBool(v)
}

// caughtUpTo implements ?min_index=N: a read that must reflect index N
// waits, briefly, for this node to apply it, else answers 503 so that the
// client asks another node.
func (s *Server) caughtUpTo(w http.ResponseWriter, r *http.Request) bool {
	raw := r.URL.Query().Get(wire.QueryMinIndex)
	if raw == "" {
		return true
	}
	min, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "", fmt.Sprintf("%s %q is not a non-negative integer", wire.QueryMinIndex, raw))
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), MaxMinIndexWait)
	defer cancel()
	if !s.b.WaitApplied(ctx, min) {
		writeError(w, http.StatusServiceUnavailable, wire.CodeBehind, fmt.Sprintf("this node has not applied index %d yet", min))
		return false
	}
	return true
}

// block implements ?index=N&wait=D: wait until the index passes N.
func (s *Server) block(w http.ResponseWriter, r *http.Request, typ string) bool {
	if !s.readable(w, r) {
		return false
	}
	after, wait, blocking, ok := blockingParams(w, r)
	if !ok || !blocking {
		return ok
	}
	return s.waitUpTo(w, r, wait, func(ctx context.Context) { s.b.WaitIndex(ctx, typ, after) })
}

// blockingParams parses a blocking query's ?index=N&wait=D: blocking is
// false without index (a wait is still checked); wait defaults to
// DefaultBlockingWait and is capped at MaxWait. It answers 400 itself.
func blockingParams(w http.ResponseWriter, r *http.Request) (after uint64, wait time.Duration, blocking, ok bool) {
	q := r.URL.Query()
	if !q.Has("index") {
		if q.Has("wait") {
			if _, ok := parseWait(w, r); !ok {
				return 0, 0, false, false
			}
		}
		return 0, 0, false, true
	}
	after, err := strconv.ParseUint(q.Get("index"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "", fmt.Sprintf("index %q is not a non-negative integer", q.Get("index")))
		return 0, 0, false, false
	}
	if wait, ok = parseWait(w, r); !ok {
		return 0, 0, false, false
	}
	if wait == 0 {
		wait = DefaultBlockingWait
	}
	return after, wait, true, true
}

// waitUpTo runs wait, in one of the node's waiting slots, with a context
// that ends after d; it answers 429 itself when no slot is free.
func (s *Server) waitUpTo(w http.ResponseWriter, r *http.Request, d time.Duration, wait func(context.Context)) bool {
	if !s.takeWaiter(w) {
		return false
	}
	defer func() { <-s.waiters }()
	ctx, cancel := context.WithTimeout(r.Context(), d)
	defer cancel()
	wait(ctx)
	return true
}

// takeWaiter reserves a waiting slot, or answers 429.
func (s *Server) takeWaiter(w http.ResponseWriter) bool {
	select {
	case s.waiters <- struct{}{}:
		return true
	default:
		tooMany(w, time.Second, fmt.Sprintf("more than %d requests are already waiting on this node", MaxWaiters))
		return false
	}
}

func parseWait(w http.ResponseWriter, r *http.Request) (time.Duration, bool) {
	raw := r.URL.Query().Get("wait")
	if raw == "" {
		return 0, true
	}
	d, err := time.ParseDuration(raw)
	if err != nil {
		// Consul-style bare seconds.
		if secs, ierr := strconv.ParseUint(raw, 10, 32); ierr == nil {
			d, err = time.Duration(secs)*time.Second, nil
		}
	}
	if err != nil || d < 0 {
		writeError(w, http.StatusBadRequest, "", fmt.Sprintf("wait %q is not a duration such as 5s", raw))
		return 0, false
	}
	return min(d, MaxWait), true
}
