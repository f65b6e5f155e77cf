package consul

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/lieur/lieur/binder"
)

// readMode is a Consul consistency mode, mapped onto lieur's read modes.
type readMode int

const (
	// modeDefault: Consul's "leader" reads; lieur serves them from this
	// node's table if it heard from a leader within --max-staleness
	// (binder.ReadAllowed), without a round trip to the leader.
	modeDefault readMode = iota
	// modeConsistent: ?consistent, linearizable (binder.ConsistentRead).
	modeConsistent
	// modeStale: ?stale, this node's table whatever its state.
	modeStale
)

// effective is Consul's X-Consul-Effective-Consistency for the mode.
func (m readMode) effective() string {
	switch m {
	case modeConsistent:
		return "consistent"
	case modeStale:
		return "stale"
	}
	return "leader"
}

// query holds the parameters every Consul read takes.
type query struct {
	mode  readMode
	index uint64        // ?index: block until the result's index passes it
	wait  time.Duration // ?wait, with Consul's default and cap
}

// parseQuery checks what Consul's parse() checks, in its order: the
// datacenter, the enterprise parameters, the consistency flags, then
// wait and index. It answers the request itself when one is wrong.
func (s *Server) parseQuery(w http.ResponseWriter, r *http.Request) (query, bool) {
	if !s.datacenterOK(w, r) || !s.entMetaOK(w, r) {
		return query{}, false
	}
	var q query
	params := r.URL.Query()
	// Flags without values, as Consul reads them: ?stale=false is stale.
	_, stale := params["stale"]
	_, consistent := params["consistent"]
	switch {
	case stale && consistent:
		writeError(w, http.StatusBadRequest, "", "Cannot specify ?stale with ?consistent, conflicting semantics.")
		return q, false
	case stale:
		q.mode = modeStale
	case consistent:
		q.mode = modeConsistent
	}
	if raw := params.Get("wait"); raw != "" {
		d, err := time.ParseDuration(raw)
		if err != nil {
			writeError(w, http.StatusBadRequest, "", "Invalid wait time")
			return q, false
		}
		q.wait = d
	}
	if raw := params.Get("index"); raw != "" {
		idx, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "", "Invalid index")
			return q, false
		}
		q.index = idx
	}
	if params.Get("filter") != "" {
		// Ignoring a filter would hand back what the caller asked not to
		// see; refuse it instead.
		writeError(w, http.StatusBadRequest, "", "?filter expressions are not supported by lieur")
		return q, false
	}
	return q, true
}

// datacenterOK accepts no ?dc or this binder's own; another datacenter is
// one lieur has no path to, and Consul says so with a 500.
func (s *Server) datacenterOK(w http.ResponseWriter, r *http.Request) bool {
	if dc := r.URL.Query().Get("dc"); dc != "" && dc != s.cfg.Datacenter {
		writeError(w, http.StatusInternalServerError, "", "No path to datacenter")
		return false
	}
	return true
}

// entMetaOK refuses namespaces and partitions other than the default one,
// with Consul CE's messages: lieur has neither.
func (s *Server) entMetaOK(w http.ResponseWriter, r *http.Request) bool {
	params := r.URL.Query()
	switch {
	case r.Header.Get("X-Consul-Namespace") != "":
		writeError(w, http.StatusBadRequest, "", `Invalid header: "X-Consul-Namespace" - Namespaces are a Consul Enterprise feature`)
	case params.Get("ns") != "":
		writeError(w, http.StatusBadRequest, "", `Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature`)
	case !isDefault(r.Header.Get("X-Consul-Partition")):
		writeError(w, http.StatusBadRequest, "", `Invalid header: "X-Consul-Partition" - Partitions are a Consul Enterprise feature`)
	case !isDefault(params.Get("partition")):
		writeError(w, http.StatusBadRequest, "", `Invalid query parameter: "partition" - Partitions are a Consul Enterprise feature`)
	default:
		return true
	}
	return false
}

func isDefault(v string) bool { return v == "" || v == "default" }

// read runs the common part of a Consul read: parameters, token, read
// mode, then, for a blocking query, the wait until the index of typ ("" for
// the whole table) passes the caller's. perm and resource name Consul's
// permission for a refusal. It answers the request itself when the read
// cannot be served.
func (s *Server) read(w http.ResponseWriter, r *http.Request, perm, resource, typ string) (query, bool) {
	q, ok := s.parseQuery(w, r)
	if !ok || !s.allowRead(w, r, perm, resource) || !s.readable(w, r, q) {
		return q, false
	}
	if q.index > 0 {
		return q, s.block(w, r, q, func(ctx context.Context) { s.b.WaitIndex(ctx, typ, q.index) })
	}
	return q, true
}

// readable applies the read mode.
func (s *Server) readable(w http.ResponseWriter, r *http.Request, q query) bool {
	var err error
	switch q.mode {
	case modeConsistent:
		err = s.b.ConsistentRead(r.Context())
	case modeDefault:
		err = s.b.ReadAllowed()
	}
	if err != nil {
		s.setFreshness(w, q)
		s.fail(w, r, err)
		return false
	}
	return true
}

// block holds the request while wait runs, for the query's wait (Consul's
// default when none, cut to Consul's cap) plus Consul's jitter, or until
// the client goes away. Past MaxWaiters waiting requests it answers 429.
func (s *Server) block(w http.ResponseWriter, r *http.Request, q query, wait func(ctx context.Context)) bool {
	select {
	case s.waiters <- struct{}{}:
	default:
		w.Header().Set("Retry-After", "2")
		writeError(w, http.StatusTooManyRequests, "",
			fmt.Sprintf("more than %d blocking queries are already waiting on this node; rate limit exceeded, try again later", s.cfg.MaxWaiters))
		return false
	}
	defer func() { <-s.waiters }()
	ctx, cancel := context.WithTimeout(r.Context(), blockFor(q.wait))
	defer cancel()
	wait(ctx)
	return true
}

// blockFor is how long a blocking query asking for wait may hold.
func blockFor(wait time.Duration) time.Duration {
	if wait <= 0 {
		wait = DefaultWait
	}
	wait = min(wait, MaxWait)
	return wait + rand.N(wait/JitterFraction+1)
}

// setMeta sets the headers of Consul's QueryMeta: the index of what the
// answer covers (never 0: a client blocking on 0 would not block, and
// would ask again at once, forever), the freshness of this node's table
// and the consistency it was read with.
func (s *Server) setMeta(w http.ResponseWriter, q query, index uint64) {
	w.Header().Set("X-Consul-Index", strconv.FormatUint(max(index, 1), 10))
	s.setFreshness(w, q)
}

// setFreshness sets X-Consul-LastContact (milliseconds since this node
// heard from a leader, 0 on the leader), X-Consul-KnownLeader and
// X-Consul-Effective-Consistency.
func (s *Server) setFreshness(w http.ResponseWriter, q query) {
	lc := s.b.LastContact()
	h := w.Header()
	h.Set("X-Consul-LastContact", strconv.FormatInt(max(lc, 0).Milliseconds(), 10))
	h.Set("X-Consul-KnownLeader", strconv.FormatBool(s.knownLeader(lc)))
	h.Set("X-Consul-Effective-Consistency", q.mode.effective())
}

// knownLeader approximates Consul's "this server knows a leader": lieur
// says so while the node has heard from a leader within --max-staleness,
// the condition it serves default reads on. (The node's raft view of the
// leader is only in binder.Status, which hashes the whole table: too dear
// for every read.)
func (s *Server) knownLeader(lastContact time.Duration) bool {
	return lastContact >= 0 && !errors.Is(s.b.ReadAllowed(), binder.ErrStale)
}
