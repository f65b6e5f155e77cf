package httpapi

import (
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/lieur/lieur/transport/wire"
)

// Browsers send some cross-origin requests without asking first: a POST
// whose body is text/plain or a form is such a "simple" request. Refusing
// every body that is not JSON with 415 makes a page of another site unable
// to register, report or join through a binder it can reach (a developer's
// local cluster, say); a request with a JSON body needs a preflight, which
// only origins an operator allowed get an answer to.

// HasBody reports whether the request carries a body.
func HasBody(r *http.Request) bool {
	return r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody)
}

// IsJSON reports whether the request says its body is JSON.
func IsJSON(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}

func unsupportedMediaType(w http.ResponseWriter, r *http.Request) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "none"
	}
	w.Header().Set("Accept", "application/json")
	writeError(w, http.StatusUnsupportedMediaType, "", fmt.Sprintf("a request body must be JSON: Content-Type: application/json (got %s)", truncate(ct)))
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// CORSPolicy is how one API answers browsers: the origins an operator
// allowed (--allow-origin; "*" for any) and the methods and headers pages
// of those origins may use. Every front door mounted on a binder's port
// applies one, each with its own headers.
type CORSPolicy struct {
	Origins       map[string]bool
	AllowMethods  string
	AllowHeaders  string
	ExposeHeaders string
}

// NewCORSPolicy returns a policy for origins as given to --allow-origin.
func NewCORSPolicy(origins []string, allowMethods, allowHeaders, exposeHeaders string) CORSPolicy {
	p := CORSPolicy{Origins: map[string]bool{}, AllowMethods: allowMethods, AllowHeaders: allowHeaders, ExposeHeaders: exposeHeaders}
	p.Allow(origins)
	return p
}

// Allow adds origins (a trailing slash is ignored).
func (p CORSPolicy) Allow(origins []string) {
	for _, o := range origins {
		p.Origins[strings.TrimRight(o, "/")] = true
	}
}

// Apply answers the CORS part of a request that names an Origin. It
// reports false when it answered the request itself (a preflight).
func (p CORSPolicy) Apply(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	w.Header().Add("Vary", "Origin")
	if !p.Origins[origin] && !p.Origins["*"] {
		if preflight {
			writeError(w, http.StatusForbidden, "", fmt.Sprintf("origin %s may not call this API from a browser (see --allow-origin)", truncate(origin)))
			return false
		}
		// No CORS header: the browser keeps the answer from the page.
		return true
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	if preflight {
		h.Set("Access-Control-Allow-Methods", p.AllowMethods)
		h.Set("Access-Control-Allow-Headers", p.AllowHeaders)
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	h.Set("Access-Control-Expose-Headers", p.ExposeHeaders)
	return true
}

// lieurCORS is lieur's own API's policy, before origins are added.
func lieurCORS() CORSPolicy {
	return NewCORSPolicy(nil, "GET, POST, PUT, DELETE", "Authorization, Content-Type, X-Lieur-Request-Id",
		"X-Lieur-Index, X-Lieur-Last-Contact, Retry-After, WWW-Authenticate")
}

// allowCluster lets through only calls from binders of this cluster: with
// a token file, those with the cluster's credential; without one, those
// carrying the cluster's id, which a stranger on the network does not
// know (it is in the log and snapshots, and members send it to each
// other). Before the cluster has an id (its first second, or while a
// member still runs a build that predates ids) there is nothing to check.
func (s *Server) allowCluster(w http.ResponseWriter, r *http.Request) bool {
	if s.auth.enabled() {
		return s.auth.allow(w, r, RoleCluster, "")
	}
	if s.b.ClusterID() != "" && !s.fromCluster(r) {
		writeError(w, http.StatusForbidden, wire.CodeNotCluster, "internal endpoint: only binders of this cluster may call it")
		return false
	}
	return true
}

// fromCluster reports whether the request proves it comes from a binder
// of this cluster (see allowCluster).
func (s *Server) fromCluster(r *http.Request) bool {
	if s.auth.enabled() {
		tok, _ := s.auth.identify(r)
		return tok != nil && tok.role == RoleCluster
	}
	return sameSecret(r.Header.Get(wire.HeaderCluster), s.b.ClusterID())
}

// scope is the list of service types the request's token is bound to, nil
// when it may act on any. A binder forwarding a call passes its caller's
// scope in a header, honoured only from the cluster.
func (s *Server) scope(r *http.Request) []string {
	if h := r.Header.Get(wire.HeaderScope); h != "" && s.fromCluster(r) {
		return strings.Split(h, ",")
	}
	if !s.auth.enabled() {
		return nil
	}
	tok, _ := s.auth.identify(r)
	if tok == nil || tok.role != RoleRegister || tok.types == nil {
		return nil
	}
	out := make([]string, 0, len(tok.types))
	for t := range tok.types {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}
