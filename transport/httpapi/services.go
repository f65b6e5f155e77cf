package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/fsm"
	"github.com/lieur/lieur/transport/wire"
)

func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	var req wire.RegisterRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if !s.auth.allow(w, r, RoleRegister, req.Type) {
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil {
			writeError(w, http.StatusBadRequest, "", fmt.Sprintf("ttl %q is not a duration such as 10s", req.TTL))
			return
		}
		ttl = d
	}
	reg := binder.Registration{ID: req.ID, Type: req.Type, Address: req.Address, Port: req.Port, Meta: req.Meta, TTL: ttl, Scope: s.scope(r)}
	id, idx, err := s.b.Register(r.Context(), reg)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.RegisterResponse{ID: id, Index: idx})
}

// deregister and heartbeat pass the token's types on to the binder: which
// type an id has is decided by the leader's table, not by this node's copy,
// which may not hold the id yet.
func (s *Server) deregister(w http.ResponseWriter, r *http.Request) {
	idx, err := s.b.Deregister(r.Context(), r.PathValue("id"), r.Header.Get(wire.HeaderRequestID), s.scope(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.IndexResponse{Index: idx})
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.b.Heartbeat(r.Context(), id, s.scope(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"renewed": id})
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) {
	typ := r.PathValue("type")
	if err := binder.ValidateType(typ); err != nil {
		s.fail(w, r, err)
		return
	}
	var wait time.Duration
	if r.URL.RawQuery == "" {
		// The common case: a default read, no options to parse.
		s.setLastContact(w)
		if err := s.b.ReadAllowed(); err != nil {
			s.fail(w, r, fmt.Errorf("%w; ?stale=true reads this node's table anyway", err))
			return
		}
	} else {
		var ok bool
		if wait, ok = parseWait(w, r); !ok || !s.readable(w, r) {
			return
		}
	}
	var inst fsm.Instance
	var err error
	if wait > 0 {
		if !s.takeWaiter(w) {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		inst, err = s.b.LookupWait(ctx, typ)
		cancel()
		<-s.waiters
	} else {
		inst, err = s.b.Lookup(typ)
	}
	h := w.Header()
	// On a 404 too: a client may wait for the type with ?index=.
	h.Set(wire.HeaderIndex, strconv.FormatUint(s.b.TypeIndex(typ), 10))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(inst.Encoded(func() []byte {
		b, _ := json.Marshal(toWire(inst))
		return append(b, '\n')
	}))
}

func (s *Server) services(w http.ResponseWriter, r *http.Request) {
	if !s.block(w, r, "") {
		return
	}
	list, idx := s.b.Services()
	w.Header().Set(wire.HeaderIndex, strconv.FormatUint(idx, 10))
	writeJSON(w, http.StatusOK, wire.ServicesResponse{Services: toWireList(list)})
}

func (s *Server) servicesOf(w http.ResponseWriter, r *http.Request) {
	typ := r.PathValue("type")
	if err := binder.ValidateType(typ); err != nil {
		s.fail(w, r, err)
		return
	}
	if !s.block(w, r, typ) {
		return
	}
	list, idx := s.b.ServicesOf(typ)
	w.Header().Set(wire.HeaderIndex, strconv.FormatUint(idx, 10))
	if len(list) == 0 {
		writeError(w, http.StatusNotFound, "", fmt.Sprintf("unknown service type %q", typ))
		return
	}
	writeJSON(w, http.StatusOK, wire.ServicesResponse{Services: toWireList(list)})
}

func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	var req wire.ReportRequest
	if !decodeBody(w, r, &req) || !s.readable(w, r) {
		return
	}
	if req.ID == "" {
		writeError(w, http.StatusBadRequest, "", "id is required")
		return
	}
	if ok, retry := s.reports.allow(clientAddr(r), time.Now()); !ok {
		tooMany(w, retry, fmt.Sprintf("too many reports from this address (at most %d/s)", ReportRate))
		return
	}
	select {
	case s.verifying <- struct{}{}:
		defer func() { <-s.verifying }()
	default:
		tooMany(w, time.Second, fmt.Sprintf("more than %d reports are already being verified on this node", MaxVerifying))
		return
	}
	v, idx, err := s.b.Report(r.Context(), req.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.ReportResponse{ID: req.ID, Verdict: string(v), Index: idx})
}

func toWire(i fsm.Instance) wire.Instance {
	meta := i.Meta
	if meta == nil {
		meta = map[string]string{}
	}
	out := wire.Instance{ID: i.ID, Type: i.Type, Address: i.Address, Port: i.Port, Meta: meta, Health: i.Health, Flaps: i.Flaps,
		Status: i.Status(), Tags: i.Tags}
	for _, c := range i.Checks {
		out.Checks = append(out.Checks, wire.Check{ID: c.ID, Name: c.Name, Kind: c.Kind, Status: c.Status, Output: c.Output})
	}
	if i.TTLMillis > 0 {
		out.TTL = (time.Duration(i.TTLMillis) * time.Millisecond).String()
	}
	return out
}

func toWireList(list []fsm.Instance) []wire.Instance {
	out := make([]wire.Instance, len(list))
	for i, inst := range list {
		out[i] = toWire(inst)
	}
	return out
}
