package consul

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/lieur/lieur/transport/httpapi"
)

// Consul's ACL errors, which its clients recognise by their text
// ("Permission denied", "ACL not found"). Consul answers both with 403,
// never 401: a request without a token is the anonymous token's.
const (
	errACLNotFound      = "ACL not found"
	errPermissionDenied = "Permission denied"
)

// requestToken finds a request's token where Consul looks for it, in
// Consul's order: ?token=, X-Consul-Token, Authorization: Bearer.
func requestToken(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if t := httpapi.TokenFromHeader(r, "X-Consul-Token"); t != "" {
		return t
	}
	return httpapi.TokenFromHeader(r, "Authorization")
}

// allowRead lets a read through: always without tokens or without
// AuthReads, else with any known token (every role includes read). perm
// names Consul's permission and resource for the refusal
// ("service:read", "web").
func (s *Server) allowRead(w http.ResponseWriter, r *http.Request, perm, resource string) bool {
	if !s.auth.Enabled() || !s.auth.AuthReads {
		return true
	}
	_, _, ok := s.identify(w, r, perm, resource)
	return ok
}

// allowWrite lets a write through for a register token (or a stronger
// one), and returns its scope: the service types a type-bound register
// token may touch, nil for any. typ, when known, is checked against the
// scope here; the binder checks it again against the leader's table.
func (s *Server) allowWrite(w http.ResponseWriter, r *http.Request, typ string) ([]string, bool) {
	if !s.auth.Enabled() {
		return nil, true
	}
	role, types, ok := s.identify(w, r, "service:write", typ)
	if !ok {
		return nil, false
	}
	if role < httpapi.RoleRegister || (typ != "" && types != nil && !slices.Contains(types, typ)) {
		denied(w, "provided token", "service:write", typ)
		return nil, false
	}
	return types, true
}

// identify resolves the request's token, answering 403 itself when it
// has none or an unknown one.
func (s *Server) identify(w http.ResponseWriter, r *http.Request, perm, resource string) (httpapi.Role, []string, bool) {
	secret := requestToken(r)
	if secret == "" {
		denied(w, "anonymous token", perm, resource)
		return 0, nil, false
	}
	role, types, ok := s.auth.Identify(secret)
	if !ok {
		writeError(w, http.StatusForbidden, "", errACLNotFound)
		return 0, nil, false
	}
	return role, types, true
}

// denied answers Consul's 403 for a token that lacks a permission.
func denied(w http.ResponseWriter, who, perm, resource string) {
	msg := fmt.Sprintf("%s: %s lacks permission '%s'", errPermissionDenied, who, perm)
	if resource != "" {
		msg += fmt.Sprintf(" on %q", resource)
	}
	writeError(w, http.StatusForbidden, "", msg)
}
