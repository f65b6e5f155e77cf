package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"net/http/pprof"
	"path"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/fsm"
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
	Deregister(ctx context.Context, id, requestID string, scope []string) (uint64, error)
	Heartbeat(ctx context.Context, id string, scope []string) error
	Lookup(typ string) (fsm.Instance, error)
	LookupWait(ctx context.Context, typ string) (fsm.Instance, error)
	Services() ([]fsm.Instance, uint64)
	ServicesOf(typ string) ([]fsm.Instance, uint64)
	TypeIndex(typ string) uint64
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
	ClusterID() string
	Events(after uint64, limit int) ([]binder.Event, uint64, uint64)
	WaitEvents(ctx context.Context, after uint64) bool
	ClusterStatus(ctx context.Context) binder.ClusterStatusReport
	CheckUpdateOnLeader(ctx context.Context, checkID, status, output string, scope []string) (uint64, error)
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

	// cors: which origins may read answers from a browser; none by default.
	cors CORSPolicy

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

// WithAllowedOrigins lets pages of these origins ("https://ui.example:8443",
// or "*" for any) call the API from a browser: their requests get CORS
// headers and preflights an answer. Without it no CORS header is ever
// sent, so a page of another site can neither read an answer nor send a
// request with a JSON body.
func WithAllowedOrigins(origins []string) Option {
	return func(s *Server) {
		s.cors.Allow(origins)
	}
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
		verifying: make(chan struct{}, MaxVerifying), cors: lieurCORS()}
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
	s.operatorRoutes()
	s.handle("GET /v1/status", s.readRole(), s.status)
	s.snapshotRoutes()
	s.leaseRoutes()
	s.handle("GET /v1/cluster/status", s.readRole(), s.clusterStatus)
	s.handle("GET /v1/events", s.readRole(), s.events)
	s.handle("POST /v1/internal/apply", RoleCluster, s.internalApply)
	s.handle("GET /v1/internal/read-index", RoleCluster, s.internalReadIndex)
	s.handle("PUT /v1/internal/check/{id}", RoleCluster, s.internalCheckUpdate)
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
	if r.Header.Get("Origin") != "" && !s.cors.Apply(w, r) {
		return
	}
	if HasBody(r) && !IsJSON(r) && !isSnapshotUpload(r) {
		unsupportedMediaType(w, r)
		return
	}
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
	switch need {
	case RoleNone:
	case RoleCluster:
		inner := h
		h = func(w http.ResponseWriter, r *http.Request) {
			if s.allowCluster(w, r) {
				inner(w, r)
			}
		}
	default:
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
