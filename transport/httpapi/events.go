package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/wire"
)

// events answers GET /v1/events[?index=N&wait=D&limit=L]: this binder's
// recent history of the table, newest first, from its memory. No read
// mode applies: it is this binder's own diagnostic record, worth most
// exactly when the binder refuses default reads.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	limit, ok := eventsLimit(w, r)
	if !ok {
		return
	}
	after, wait, blocking, ok := blockingParams(w, r)
	if !ok {
		return
	}
	if blocking && !s.waitUpTo(w, r, wait, func(ctx context.Context) { s.b.WaitEvents(ctx, after) }) {
		return
	}
	events, newest, oldest := s.b.Events(after, limit)
	resp := wire.EventsResponse{Index: newest, Oldest: oldest, Events: make([]wire.Event, len(events))}
	for i, e := range events {
		resp.Events[i] = toWireEvent(e)
	}
	w.Header().Set(wire.HeaderIndex, strconv.FormatUint(newest, 10))
	writeJSON(w, http.StatusOK, resp)
}

// eventsLimit parses ?limit=L, 1..binder.EventRingSize (the default).
func eventsLimit(w http.ResponseWriter, r *http.Request) (int, bool) {
	q := r.URL.Query()
	if !q.Has("limit") {
		return binder.EventRingSize, true
	}
	raw := q.Get("limit")
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > binder.EventRingSize {
		writeError(w, http.StatusBadRequest, "", fmt.Sprintf("limit %q is not an integer from 1 to %d", raw, binder.EventRingSize))
		return 0, false
	}
	return n, true
}

func toWireEvent(e binder.Event) wire.Event {
	return wire.Event{Index: e.Index, Time: e.Time.UTC().Format(wire.EventTimeFormat), Kind: e.Kind,
		ID: e.ID, Type: e.Type, Address: e.Address, Port: e.Port, Health: e.Health, Reason: e.Reason}
}
