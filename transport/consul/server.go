package consul

import (
	"context"
	"fmt"
	"net/http"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/fsm"
	"github.com/lieur/lieur/transport/httpapi"
)

// Binder is what the Consul views need of a node. *binder.Node implements
// it.
type Binder interface {
	Register(ctx context.Context, r binder.Registration) (string, uint64, error)
	Deregister(ctx context.Context, id, requestID string, scope []string) (uint64, error)
	CheckUpdate(ctx context.Context, checkID, status, output string, scope []string) error
	Services() ([]fsm.Instance, uint64)
	ServicesOf(typ string) ([]fsm.Instance, uint64)
	TypeIndex(typ string) uint64
	TypeOf(id string) (string, bool)
	CheckOwner(checkID string) (fsm.Instance, bool)
	WaitIndex(ctx context.Context, typ string, after uint64) bool
	ReadAllowed() error
	ConsistentRead(ctx context.Context) error
	LastContact() time.Duration
	Cluster(ctx context.Context) (string, []binder.Member)
	Status() binder.Status
	ID() string
}

var _ Binder = (*binder.Node)(nil)

// Blocking queries, as Consul bounds them.
const (
	// DefaultWait is the wait of a blocking query that gives none.
	DefaultWait = 5 * time.Minute
	// MaxWait caps ?wait=; longer waits are cut to it.
	MaxWait = 10 * time.Minute
	// JitterFraction: a blocking query waits up to 1/JitterFraction
	// longer than asked, at random, so that watchers started together do
	// not all come back at once.
	JitterFraction = 16
	// MaxBlockingTime is the longest a blocking query can hold a
	// request: an HTTP server's write timeout must exceed it.
	MaxBlockingTime = MaxWait + MaxWait/JitterFraction
	// DefaultMaxWaiters bounds the blocking queries waiting at once on a
	// node when Config.MaxWaiters is zero.
	DefaultMaxWaiters = 16384
)

// Config is what a binder tells Consul clients about itself.
type Config struct {
	// Datacenter is the binder's datacenter (default "dc1"): ?dc= must
	// name it, and every node and service view carries it.
	Datacenter string
	// NodeName is the binder's name in /v1/agent/self (default: the
	// node's id).
	NodeName string
	// MaxWaiters bounds the blocking queries waiting at once (default
	// DefaultMaxWaiters); past it, 429.
	MaxWaiters int
}

// DefaultDatacenter is Consul's default datacenter name.
const DefaultDatacenter = "dc1"

var datacenterRe = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// ValidateDatacenter checks a datacenter name as Consul does: lower-case
// letters, digits, '_' and '-'.
func ValidateDatacenter(dc string) error {
	if !datacenterRe.MatchString(dc) {
		return fmt.Errorf("datacenter %q must be 1 to 64 lower-case letters, digits, '_' or '-'", dc)
	}
	return nil
}

// Server serves Consul's HTTP API over a Binder.
type Server struct {
	b    Binder
	cfg  Config
	log  hclog.Logger
	auth *httpapi.Auth
	cors httpapi.CORSPolicy // Consul's headers, the operator's origins
	// mux routes requests; routes holds the same routes without the
	// fallback, to tell an unsupported path from a wrong method.
	mux     *http.ServeMux
	routes  *http.ServeMux
	waiters chan struct{}
	answers answerCache // /v1/health/service answers, per query
}

// Option configures a Server.
type Option func(*Server)

// WithAuth checks Consul tokens (?token=, X-Consul-Token, Authorization:
// Bearer) against lieur's token file: reads need a read token only with
// AuthReads, writes a register token (see docs/consul.md).
func WithAuth(a *httpapi.Auth) Option {
	return func(s *Server) { s.auth = a }
}

// WithAllowedOrigins lets pages of these origins call the Consul endpoints
// from a browser, as httpapi.WithAllowedOrigins does for lieur's own.
// Without it no CORS header is sent and every preflight is refused.
func WithAllowedOrigins(origins []string) Option {
	return func(s *Server) {
		s.cors.Allow(origins)
	}
}

// NewServer returns the Consul API handler for b.
func NewServer(b Binder, cfg Config, logger hclog.Logger, opts ...Option) (*Server, error) {
	if cfg.Datacenter == "" {
		cfg.Datacenter = DefaultDatacenter
	}
	if err := ValidateDatacenter(cfg.Datacenter); err != nil {
		return nil, err
	}
	if cfg.NodeName == "" {
		cfg.NodeName = b.ID()
	}
	if cfg.MaxWaiters <= 0 {
		cfg.MaxWaiters = DefaultMaxWaiters
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	s := &Server{b: b, cfg: cfg, log: logger, cors: httpapi.NewCORSPolicy(nil, "GET, PUT", "Authorization, Content-Type, X-Consul-Token",
		"X-Consul-Index, X-Consul-KnownLeader, X-Consul-LastContact, X-Consul-ContentHash, X-Consul-Effective-Consistency, Retry-After"),
		mux: http.NewServeMux(), routes: http.NewServeMux(), waiters: make(chan struct{}, cfg.MaxWaiters)}
	for _, o := range opts {
		o(s)
	}
	s.mux.HandleFunc("/", s.notRouted)

	s.handle("PUT /v1/agent/service/register", s.agentRegister)
	s.handle("PUT /v1/agent/service/deregister/{id}", s.agentDeregister)
	s.handle("GET /v1/agent/services", s.agentServices)
	s.handle("GET /v1/agent/service/{id}", s.agentService)
	s.handle("PUT /v1/agent/check/pass/{id}", s.checkStatus(fsm.StatusPassing))
	s.handle("PUT /v1/agent/check/warn/{id}", s.checkStatus(fsm.StatusWarning))
	s.handle("PUT /v1/agent/check/fail/{id}", s.checkStatus(fsm.StatusCritical))
	s.handle("PUT /v1/agent/check/update/{id}", s.checkUpdate)
	s.handle("GET /v1/agent/checks", s.agentChecks)
	s.handle("GET /v1/agent/self", s.agentSelf)

	s.handle("GET /v1/catalog/services", s.catalogServices)
	s.handle("GET /v1/catalog/service/{name}", s.catalogService)
	s.handle("GET /v1/catalog/service/{$}", missing("Missing service name"))
	s.handle("GET /v1/catalog/nodes", s.catalogNodes)
	s.handle("GET /v1/catalog/datacenters", s.catalogDatacenters)

	s.handle("GET /v1/health/service/{name}", s.healthService)
	s.handle("GET /v1/health/service/{$}", missing("Missing service name"))
	s.handle("GET /v1/health/checks/{name}", s.healthChecks)
	s.handle("GET /v1/health/checks/{$}", missing("Missing service name"))
	s.handle("GET /v1/health/state/{state}", s.healthState)
	s.handle("GET /v1/health/state/{$}", missing("Missing check state"))

	s.handle("GET /v1/status/leader", s.statusLeader)
	s.handle("GET /v1/status/peers", s.statusPeers)
	return s, nil
}

func missing(msg string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusBadRequest, "", msg)
	}
}

func (s *Server) handle(pattern string, h http.HandlerFunc) {
	s.routes.HandleFunc(pattern, h)
	s.mux.HandleFunc(pattern, h)
}

// ServeHTTP answers a request whose path Owns accepts.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.Error("panic serving Consul request", "method", r.Method, "path", r.URL.Path, "panic", p)
			writeError(w, http.StatusInternalServerError, "", "internal error")
		}
	}()
	if r.Header.Get("Origin") != "" && !s.cors.Apply(w, r) {
		return
	}
	// Consul's clients send their bodies with PUT, and python-consul sends
	// them without a Content-Type, so a PUT body is taken whatever it says
	// it is. That stays safe from other sites' pages: PUT is not a CORS
	// "simple" method, so a browser preflights it, and preflights are
	// refused unless --allow-origin names the page's origin. A POST with a
	// form or text body needs no preflight: one that is not JSON is refused
	// (no endpoint here takes POST, but the rule does not depend on that).
	if r.Method == http.MethodPost && httpapi.HasBody(r) && !httpapi.IsJSON(r) {
		w.Header().Set("Accept", "application/json")
		writeError(w, http.StatusUnsupportedMediaType, "", "a request body must be JSON: Content-Type: application/json")
		return
	}
	if c := path.Clean(r.URL.Path); c != r.URL.Path && c+"/" != r.URL.Path {
		// The mux would redirect ("/v1//kv" to "/v1/kv"); Consul's clients
		// send clean paths, so another one is simply not an endpoint.
		s.unsupported(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// notRouted tells a known path with another method (405, with Consul's
// Allow list) from a path lieur does not serve (404).
func (s *Server) notRouted(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{header: http.Header{}}
	h, _ := s.routes.Handler(r)
	h.ServeHTTP(rec, r)
	if rec.status != http.StatusMethodNotAllowed {
		s.unsupported(w, r)
		return
	}
	allow := "OPTIONS," + strings.ReplaceAll(rec.header.Get("Allow"), " ", "")
	w.Header().Set("Allow", allow)
	if r.Method == http.MethodOptions {
		// Consul answers OPTIONS on its endpoints with the methods they take.
		w.WriteHeader(http.StatusOK)
		return
	}
	writeError(w, http.StatusMethodNotAllowed, "", fmt.Sprintf("method %s not allowed", r.Method))
}

type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(code int)        { r.status = code }
