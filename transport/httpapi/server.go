package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"net/http/pprof"
	"path"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/fsm"
	"github.com/lieur/lieur/transport/wire"
)

// Limits of the API.
const (
	// MaxBodyBytes caps every request body.
	MaxBodyBytes = 64 << 10
	// MaxWait caps ?wait= on lookups and blocking queries.
	MaxWait = 5 * time.Minute
	// DefaultBlockingWait is the wait of a blocking query that names an
	// index but no wait.
	DefaultBlockingWait = 5 * time.Minute
	// MaxMinIndexWait bounds how long a read waits for this node to apply
	// the min_index it asked for.
	MaxMinIndexWait = 2 * time.Second
)

// Binder is what the API needs of a node. *binder.Node implements it.
type Binder interface {
	Register(ctx context.Context, r binder.Registration) (string, uint64, error)
	Deregister(ctx context.Context, id, requestID string) (uint64, error)
	Heartbeat(ctx context.Context, id string) error
	Lookup(typ string) (fsm.Instance, error)
	LookupWait(ctx context.Context, typ string) (fsm.Instance, error)
	Services() ([]fsm.Instance, uint64)
	ServicesOf(typ string) ([]fsm.Instance, uint64)
	TypeIndex(typ string) uint64
	TypeOf(id string) (string, bool)
	WaitIndex(ctx context.Context, typ string, after uint64) bool
	Report(ctx context.Context, id string) (binder.Verdict, uint64, error)
	WaitApplied(ctx context.Context, index uint64) bool
	ConsistentRead(ctx context.Context) error
	ReadAllowed() error
	ReadIndex(ctx context.Context) (uint64, error)
	LastContact() time.Duration
	Cluster(ctx context.Context) (string, []binder.Member)
	Status() binder.Status
	Join(ctx context.Context, m binder.Member) error
	RemoveMember(ctx context.Context, id string) error
	ApplyLocal(ctx context.Context, command []byte) (uint64, error)
	ApplyLocalBatch(ctx context.Context, commands [][]byte) []binder.Outcome
}

var _ Binder = (*binder.Node)(nil)

// Server routes API requests to a Binder.
type Server struct {
	b   Binder
	log hclog.Logger
	// mux routes requests; routes holds the same routes without the
	// catch-all, to tell a 404 from a 405 when nothing matched.
	mux     *http.ServeMux
	routes  *http.ServeMux
	metrics *httpMetrics
	auth    *Auth

	waiters   chan struct{} // one slot per waiting request
	reports   *limiter      // per client address
	verifying chan struct{} // one slot per report being answered
}

// Option configures a Server.
type Option func(*Server)

// WithMetrics registers the server's request metrics in reg and serves reg
// at GET /metrics.
func WithMetrics(reg *prometheus.Registry) Option {
	return func(s *Server) {
		s.metrics = newHTTPMetrics()
		reg.MustRegister(s.metrics.requests, s.metrics.seconds)
		s.handle("GET /metrics", s.readRole(), MetricsHandler(reg).ServeHTTP)
	}
}

// WithAuth checks tokens on every request (see Auth). Options apply in
// order: give WithAuth before the others.
func WithAuth(a *Auth) Option {
	return func(s *Server) { s.auth = a }
}

// readRole is what reads need: nothing, unless reads are authenticated.
func (s *Server) readRole() Role {
	if s.auth != nil && s.auth.AuthReads {
		return RoleRead
	}
	return RoleNone
}

// WithPprof serves the runtime profiles at /debug/pprof/.
func WithPprof() Option {
	return func(s *Server) {
		s.handle("GET /debug/pprof/", RoleAdmin, pprof.Index)
		s.handle("GET /debug/pprof/cmdline", RoleAdmin, pprof.Cmdline)
		s.handle("GET /debug/pprof/profile", RoleAdmin, pprof.Profile)
		s.handle("GET /debug/pprof/symbol", RoleAdmin, pprof.Symbol)
		s.handle("GET /debug/pprof/trace", RoleAdmin, pprof.Trace)
	}
}

// NewServer returns the API handler for b.
func NewServer(b Binder, logger hclog.Logger, opts ...Option) *Server {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	s := &Server{b: b, log: logger, mux: http.NewServeMux(), routes: http.NewServeMux(),
		waiters: make(chan struct{}, MaxWaiters), reports: newLimiter(ReportRate, ReportBurst),
		verifying: make(chan struct{}, MaxVerifying)}
	for _, o := range opts {
		o(s)
	}
	s.mux.HandleFunc("/", s.notRouted)
	s.handle("POST /v1/services", RoleRegister, s.register)
	s.handle("DELETE /v1/services/{id}", RoleRegister, s.deregister)
	s.handle("PUT /v1/services/{id}/heartbeat", RoleRegister, s.heartbeat)
	s.handle("GET /v1/services", s.readRole(), s.services)
	s.handle("GET /v1/services/{type}", s.readRole(), s.servicesOf)
	s.handle("GET /v1/lookup/{type}", s.readRole(), s.lookup)
	s.handle("POST /v1/reports", RoleRead, s.report)
	s.handle("GET /v1/cluster", s.readRole(), s.cluster)
	s.handle("POST /v1/cluster/join", RoleAdmin, s.join)
	s.handle("DELETE /v1/cluster/members/{id}", RoleAdmin, s.removeMember)
	s.handle("GET /v1/status", s.readRole(), s.status)
	s.handle("POST /v1/internal/apply", RoleCluster, s.internalApply)
	s.handle("GET /v1/internal/read-index", RoleCluster, s.internalReadIndex)
	s.handle("GET /healthz", RoleNone, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	return s
}

// ServeHTTP answers a request. Paths and methods the mux does not know get
// the same JSON error body as everything else.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			id := requestID()
			s.log.Error("panic serving request", "request_id", id, "method", r.Method, "path", r.URL.Path, "panic", p)
			writeError(w, http.StatusInternalServerError, "", "internal error (request id "+id+")")
		}
	}()
	if !isClean(r.URL.Path) {
		// The mux would redirect with an HTML body; answer in JSON.
		s.notRouted(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// isClean reports whether p is already in the form the mux routes.
func isClean(p string) bool {
	c := path.Clean(p)
	return c == p || (c+"/" == p && c != "/")
}

// handle registers a route, counted and timed under its pattern, open to
// tokens of at least role need (when tokens are configured).
func (s *Server) handle(pattern string, need Role, h http.HandlerFunc) {
	s.routes.HandleFunc(pattern, h)
	if need != RoleNone {
		inner := h
		h = func(w http.ResponseWriter, r *http.Request) {
			if s.auth.allow(w, r, need, "") {
				inner(w, r)
			}
		}
	}
	if s.metrics != nil {
		m := s.metrics.route(pattern)
		inner := h
		h = func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
			inner(sw, r)
			m.observe(sw.code, start)
		}
	}
	s.mux.HandleFunc(pattern, h)
}

// notRouted lets the mux decide between 404, 405 and a redirect to a clean
// path, then replaces its plain-text body with a JSON one.
func (s *Server) notRouted(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{header: http.Header{}}
	h, _ := s.routes.Handler(r)
	h.ServeHTTP(rec, r)
	for _, k := range []string{"Allow", "Location"} {
		if v := rec.header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	switch rec.status {
	case http.StatusMethodNotAllowed:
		writeError(w, rec.status, "", fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path))
	case http.StatusMovedPermanently, http.StatusPermanentRedirect, http.StatusTemporaryRedirect, http.StatusFound:
		writeError(w, rec.status, "", fmt.Sprintf("path %s is not canonical; see Location", r.URL.Path))
	default:
		writeError(w, http.StatusNotFound, "", fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	}
}

type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(code int)        { r.status = code }

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
	id, idx, err := s.b.Register(r.Context(), binder.Registration{ID: req.ID, Type: req.Type, Address: req.Address, Port: req.Port, Meta: req.Meta, TTL: ttl})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.RegisterResponse{ID: id, Index: idx})
}

func (s *Server) deregister(w http.ResponseWriter, r *http.Request) {
	if typ, ok := s.b.TypeOf(r.PathValue("id")); ok && !s.auth.allow(w, r, RoleRegister, typ) {
		return
	}
	idx, err := s.b.Deregister(r.Context(), r.PathValue("id"), r.Header.Get(wire.HeaderRequestID))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.IndexResponse{Index: idx})
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if typ, ok := s.b.TypeOf(id); ok && !s.auth.allow(w, r, RoleRegister, typ) {
		return
	}
	if err := s.b.Heartbeat(r.Context(), id); err != nil {
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
		if err := s.b.ReadAllowed(); err != nil {
			s.fail(w, r, fmt.Errorf("%w; ?stale=true reads this node's table anyway", err))
			return
		}
		s.setLastContact(w)
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
	if err != nil {
		s.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set(wire.HeaderIndex, strconv.FormatUint(s.b.TypeIndex(typ), 10))
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

func (s *Server) internalReadIndex(w http.ResponseWriter, r *http.Request) {
	idx, err := s.b.ReadIndex(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.IndexResponse{Index: idx})
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
	q := r.URL.Query()
	if !q.Has("index") {
		if q.Has("wait") {
			if _, ok := parseWait(w, r); !ok {
				return false
			}
		}
		return true
	}
	after, err := strconv.ParseUint(q.Get("index"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "", fmt.Sprintf("index %q is not a non-negative integer", q.Get("index")))
		return false
	}
	wait, ok := parseWait(w, r)
	if !ok {
		return false
	}
	if wait == 0 {
		wait = DefaultBlockingWait
	}
	if !s.takeWaiter(w) {
		return false
	}
	defer func() { <-s.waiters }()
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	s.b.WaitIndex(ctx, typ, after)
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

func (s *Server) cluster(w http.ResponseWriter, r *http.Request) {
	leader, members := s.b.Cluster(r.Context())
	resp := wire.ClusterResponse{Leader: leader, Members: make([]wire.Member, 0, len(members))}
	for _, m := range members {
		resp.Members = append(resp.Members, wire.Member{ID: m.ID, RaftAddr: m.RaftAddr, HTTPAddr: m.HTTPAddr, Voter: m.Voter, State: m.State})
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	var req wire.JoinRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if err := s.b.Join(r.Context(), binder.Member{ID: req.ID, RaftAddr: req.RaftAddr, HTTPAddr: req.HTTPAddr, Voter: true}); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"joined": req.ID})
}

func (s *Server) removeMember(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.b.RemoveMember(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": id})
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := s.b.Status()
	writeJSON(w, http.StatusOK, wire.Status{
		ID: st.ID, State: st.State, Leader: st.Leader, Term: st.Term,
		AppliedIndex: st.AppliedIndex, LastLogIndex: st.LastLogIndex,
		Services: st.Services, TableHash: st.TableHash, CaughtUp: st.CaughtUp,
		LastContactMs: millis(st.LastContact), LeaseGuard: st.LeaseGuard, VerificationHold: st.VerificationHold,
	})
}

func (s *Server) internalApply(w http.ResponseWriter, r *http.Request) {
	var req wire.ApplyRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if len(req.Commands) > 0 {
		cmds := make([][]byte, len(req.Commands))
		for i, c := range req.Commands {
			cmds[i] = c
		}
		outs := s.b.ApplyLocalBatch(r.Context(), cmds)
		resp := wire.ApplyBatchResponse{Results: make([]wire.ApplyResult, len(outs))}
		for i, o := range outs {
			if o.Err == nil {
				resp.Results[i] = wire.ApplyResult{Index: o.Index, Status: http.StatusOK}
				continue
			}
			status, code, msg := errorStatus(o.Err, "")
			resp.Results[i] = wire.ApplyResult{Index: o.Index, Status: status, Code: code, Error: msg}
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	idx, err := s.b.ApplyLocal(r.Context(), req.Command)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.IndexResponse{Index: idx})
}

// fail answers a request with the status and error code for err.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := errorStatus(err, r.PathValue("type"))
	if status >= 500 {
		s.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "error", err)
	}
	writeError(w, status, code, msg)
}

// errorStatus maps a binder error to a status, an error code and the
// message to send. typ names the type of a lookup, for its 404 message.
func errorStatus(err error, typ string) (int, string, string) {
	status, code := http.StatusInternalServerError, ""
	switch {
	case errors.Is(err, binder.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, binder.ErrUnknownService), errors.Is(err, binder.ErrUnknownID):
		status = http.StatusNotFound
	case errors.Is(err, binder.ErrSuperseded):
		status, code = http.StatusConflict, wire.CodeSuperseded
	case errors.Is(err, binder.ErrNotLeader):
		status, code = http.StatusServiceUnavailable, wire.CodeNotLeader
	case errors.Is(err, binder.ErrNoLeader):
		status, code = http.StatusServiceUnavailable, wire.CodeNoLeader
	case errors.Is(err, binder.ErrOutcomeUnknown):
		status, code = http.StatusServiceUnavailable, wire.CodeOutcomeUnknown
	case errors.Is(err, binder.ErrCatchingUp):
		status, code = http.StatusServiceUnavailable, wire.CodeCatchingUp
	case errors.Is(err, binder.ErrStale):
		status, code = http.StatusServiceUnavailable, wire.CodeStale
	case errors.Is(err, binder.ErrShutdown), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		status = http.StatusServiceUnavailable
	}
	msg := err.Error()
	if errors.Is(err, binder.ErrUnknownService) {
		// The message clients and scripts match on.
		msg = fmt.Sprintf("unknown service type %q", typ)
	}
	return status, code, msg
}

// decodeBody reads a JSON body strictly: at most MaxBodyBytes, no unknown
// fields, nothing after the value.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err == nil {
		err = checkJSON(data)
	}
	if err != nil {
		msg := "invalid JSON body: " + err.Error()
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			msg = fmt.Sprintf("request body exceeds %d bytes", MaxBodyBytes)
		}
		writeError(w, http.StatusBadRequest, "", msg)
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("unexpected data after the JSON value")
		}
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		var typeErr *json.UnmarshalTypeError
		msg := "invalid JSON body: " + err.Error()
		switch {
		case errors.As(err, &tooBig):
			msg = fmt.Sprintf("request body exceeds %d bytes", MaxBodyBytes)
		case errors.As(err, &typeErr) && typeErr.Field == "":
			msg = "invalid JSON body: the body must be a JSON object"
		case errors.As(err, &typeErr):
			msg = fmt.Sprintf("field %q must be a %s", typeErr.Field, typeErr.Type)
		case errors.Is(err, io.EOF):
			msg = "request body is empty; a JSON object is required"
		}
		writeError(w, http.StatusBadRequest, "", msg)
		return false
	}
	return true
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

func toWire(i fsm.Instance) wire.Instance {
	meta := i.Meta
	if meta == nil {
		meta = map[string]string{}
	}
	out := wire.Instance{ID: i.ID, Type: i.Type, Address: i.Address, Port: i.Port, Meta: meta, Health: i.Health, Flaps: i.Flaps}
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, wire.Error{Error: msg, Code: code})
}
