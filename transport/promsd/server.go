package promsd

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/fsm"
	"github.com/lieur/lieur/transport/httpapi"
	"github.com/lieur/lieur/transport/wire"
)

// Binder is what Prometheus discovery needs of a node. *binder.Node
// implements it. Every call reads the node's memory only.
type Binder interface {
	// Services returns every instance, sorted by type then id, and the
	// index of the last change to the table.
	Services() ([]fsm.Instance, uint64)
	// ServicesOf returns the type's instances, sorted by id, and the
	// index of the last change to the type.
	ServicesOf(typ string) ([]fsm.Instance, uint64)
	// ReadAllowed is nil when the node serves default reads.
	ReadAllowed() error
	// LastContact is how long ago the node heard from a leader (-1: never).
	LastContact() time.Duration
	// ID is the node's id, for __meta_lieur_binder.
	ID() string
}

var _ Binder = (*binder.Node)(nil)

// Paths served.
const (
	// Prefix is every path this package owns (see Owns).
	Prefix = "/v1/sd/"
	// PrometheusPath answers Prometheus' http_sd_configs.
	PrometheusPath = Prefix + "prometheus"
)

// Owns reports whether a request for path p is this package's to answer:
// everything under /v1/sd/ (unknown paths there get a JSON 404 from here).
func Owns(p string) bool { return p == "/v1/sd" || strings.HasPrefix(p, Prefix) }

// Server answers Prometheus' HTTP service discovery over a Binder.
type Server struct {
	b    Binder
	log  hclog.Logger
	auth *httpapi.Auth
}

// Option configures a Server.
type Option func(*Server)

// WithAuth checks lieur's tokens: with AuthReads, a request needs a known
// token (every role includes read) as Authorization: Bearer <token>, which
// Prometheus sends with http_sd_configs' authorization: {credentials: ...}.
// Without AuthReads discovery is open, as lieur's other reads are.
func WithAuth(a *httpapi.Auth) Option {
	return func(s *Server) { s.auth = a }
}

// NewServer returns the discovery handler for b.
func NewServer(b Binder, logger hclog.Logger, opts ...Option) *Server {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	s := &Server{b: b, log: logger}
	for _, o := range opts {
		o(s)
	}
	return s
}

// ServeHTTP answers a request whose path Owns accepts.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.Error("panic serving Prometheus discovery", "method", r.Method, "path", r.URL.Path, "panic", p)
			writeError(w, http.StatusInternalServerError, "", "internal error")
		}
	}()
	if r.URL.Path != PrometheusPath {
		writeError(w, http.StatusNotFound, "", fmt.Sprintf("no such endpoint: %s %s (Prometheus discovery is GET %s)", r.Method, r.URL.Path, PrometheusPath))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "", fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path))
		return
	}
	if !s.allowRead(w, r) {
		return
	}
	q, ok := parseQuery(w, r)
	if !ok || !s.readable(w, r, q.stale) {
		return
	}
	var list []fsm.Instance
	var idx uint64
	if q.typ == "" {
		list, idx = s.b.Services()
	} else {
		list, idx = s.b.ServicesOf(q.typ)
	}
	w.Header().Set(wire.HeaderIndex, strconv.FormatUint(idx, 10))
	writeJSON(w, http.StatusOK, targetGroups(list, s.b.ID()))
}

// query is what a discovery request asks.
type query struct {
	typ   string // "" for every type
	stale bool
}

// parseQuery reads ?type= and ?stale=, answering 400 itself for a bad one.
// Other parameters are ignored, as lieur's API ignores parameters an
// endpoint does not take (docs/api.md): consistent, min_index, index and
// wait included, so this endpoint never blocks nor leaves the node.
func parseQuery(w http.ResponseWriter, r *http.Request) (query, bool) {
	var q query
	params := r.URL.Query()
	if types, ok := params["type"]; ok {
		if len(types) != 1 {
			writeError(w, http.StatusBadRequest, "", "give ?type= at most once")
			return q, false
		}
		if err := fsm.ValidateType(types[0]); err != nil {
			writeError(w, http.StatusBadRequest, "", err.Error())
			return q, false
		}
		q.typ = types[0]
	}
	if raw := params.Get("stale"); raw != "" {
		// As lieur's other reads take it: true or false, nothing else.
		stale, err := strconv.ParseBool(raw)
		if err != nil {
			writeError(w, http.StatusBadRequest, "", "stale takes true or false")
			return q, false
		}
		q.stale = stale
	}
	return q, true
}

// allowRead lets a request through without tokens or without AuthReads,
// else with any known token; it answers 401 itself otherwise, as lieur's
// own reads do.
func (s *Server) allowRead(w http.ResponseWriter, r *http.Request) bool {
	if !s.auth.Enabled() || !s.auth.AuthReads {
		return true
	}
	secret := httpapi.TokenFromHeader(r, "Authorization")
	if _, _, ok := s.auth.Identify(secret); ok {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="lieur"`)
	var msg string
	switch {
	case secret != "":
		msg = "unknown token"
	case r.Header.Get("Authorization") != "":
		// Prometheus' http_sd_configs sends the bare credentials unless
		// authorization says type: Bearer (prometheus/docs#2377).
		msg = "Authorization must be \"Bearer <token>\"; in http_sd_configs, give authorization: {type: Bearer, credentials_file: ...}"
	default:
		msg = "this endpoint needs a token: Authorization: Bearer <token> (http_sd_configs: authorization: {type: Bearer, credentials_file: ...})"
	}
	writeError(w, http.StatusUnauthorized, "", msg)
	return false
}

// readable applies the read mode: a default read is refused (503) when
// the node refuses default reads; ?stale=true reads whatever the node
// holds. It sets X-Lieur-Last-Contact either way.
func (s *Server) readable(w http.ResponseWriter, r *http.Request, stale bool) bool {
	if lc := s.b.LastContact(); lc >= 0 {
		w.Header().Set(wire.HeaderLastContact, strconv.FormatInt(lc.Milliseconds(), 10))
	}
	if stale {
		return true
	}
	err := s.b.ReadAllowed()
	if err == nil {
		return true
	}
	code := ""
	switch {
	case errors.Is(err, binder.ErrStale):
		code = wire.CodeStale
	case errors.Is(err, binder.ErrCatchingUp):
		code = wire.CodeCatchingUp
	}
	s.log.Warn("Prometheus discovery refused", "path", r.URL.Path, "status", http.StatusServiceUnavailable, "error", err)
	writeError(w, http.StatusServiceUnavailable, code, fmt.Sprintf("%v; ?stale=true reads this node's table anyway", err))
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, wire.Error{Error: msg, Code: code})
}
