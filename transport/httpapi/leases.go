package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/wire"
)

// GET /v1/leases[?type=T]: the age of every lease, measured on the
// leader's clock when it answers. Only the leader knows when heartbeats
// arrived (they never go through the log), so the age cannot be served
// from a follower's memory like the rest of the table: a follower
// forwards the question to the leader, as it does heartbeats. It is kept
// out of GET /v1/services on purpose: that answer is a blocking query
// that changes only when the table does, and an age frozen at the last
// change, present only when the leader happened to answer, would mislead.

// LeaseBinder is what GET /v1/leases needs of a node. *binder.Node
// implements it; a Binder without it serves no /v1/leases.
type LeaseBinder interface {
	Leases(ctx context.Context, typ string) (binder.LeaseReport, error)
	LeasesLocal(ctx context.Context, typ string) (binder.LeaseReport, error)
}

var (
	_ LeaseBinder      = (*binder.Node)(nil)
	_ binder.LeasePeer = (*PeerClient)(nil)
)

// leaseRoutes mounts GET /v1/leases when the binder has it.
func (s *Server) leaseRoutes() {
	lb, ok := s.b.(LeaseBinder)
	if !ok {
		return
	}
	s.handle("GET /v1/leases", s.readRole(), func(w http.ResponseWriter, r *http.Request) { s.leases(w, r, lb) })
}

func (s *Server) leases(w http.ResponseWriter, r *http.Request, lb LeaseBinder) {
	q := r.URL.Query()
	if len(q["type"]) > 1 {
		writeError(w, http.StatusBadRequest, "", "type is given more than once")
		return
	}
	typ := q.Get("type")
	if q.Has("type") {
		if err := binder.ValidateType(typ); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	var rep binder.LeaseReport
	var err error
	if r.Header.Get(wire.HeaderLeaderOnly) != "" {
		// Forwarded by a follower: answer here or not at all, so that a
		// question never travels between two nodes that each think the
		// other leads.
		rep, err = lb.LeasesLocal(r.Context(), typ)
	} else {
		rep, err = lb.Leases(r.Context(), typ)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	resp := wire.LeasesResponse{Leader: rep.Leader, Leases: make(map[string]wire.LeaseAge, len(rep.Leases))}
	for id, a := range rep.Leases {
		resp.Leases[id] = wire.LeaseAge{AgeMs: a.Age.Milliseconds(), Since: a.Clock, TTLMs: a.TTL.Milliseconds()}
	}
	writeJSON(w, http.StatusOK, resp)
}

// Leases asks the leader at httpAddr for its lease ages, marked not to be
// forwarded again, with this binder's credentials (with --auth-reads the
// leader needs a token; the caller's was checked here).
func (p *PeerClient) Leases(ctx context.Context, httpAddr, typ string) (binder.LeaseReport, error) {
	u := p.base(httpAddr) + "/v1/leases"
	if typ != "" {
		u += "?type=" + url.QueryEscape(typ)
	}
	var resp wire.LeasesResponse
	err := p.doWith(ctx, http.MethodGet, u, http.Header{wire.HeaderLeaderOnly: {"true"}}, nil, &resp)
	if errors.Is(err, binder.ErrUnknownID) {
		// do maps a 404 onto an unknown id; here it is the leader not
		// knowing the endpoint at all.
		return binder.LeaseReport{}, fmt.Errorf("%w: the leader at %s does not serve GET /v1/leases (an older build)", binder.ErrUpgrading, httpAddr)
	}
	if err != nil {
		return binder.LeaseReport{}, err
	}
	rep := binder.LeaseReport{Leader: resp.Leader, Leases: make(map[string]binder.LeaseAge, len(resp.Leases))}
	for id, a := range resp.Leases {
		rep.Leases[id] = binder.LeaseAge{Age: time.Duration(a.AgeMs) * time.Millisecond, Clock: a.Since,
			TTL: time.Duration(a.TTLMs) * time.Millisecond}
	}
	return rep, nil
}
