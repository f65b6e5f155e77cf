package consul

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/wire"
)

// errorBody is lieur's error shape. Consul answers errors in plain text,
// but its clients read whatever body comes as the message
// (api.StatusError's "Unexpected response code: 404 (<body>)",
// python-consul's exceptions), so they stay readable with JSON, and
// scripts get the same shape as from lieur's own API.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: msg, Code: code})
}

// writeOK answers a write as Consul does: 200 and no body.
func writeOK(w http.ResponseWriter) { w.WriteHeader(http.StatusOK) }

// fail answers err with Consul's status for it. Consul answers 500 for
// whatever keeps the cluster from serving a request (no leader, a lost
// leader, shutdown); its clients retry those (api.IsRetryableError), so
// lieur's 503s become 500s here, with lieur's code in the body.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := errorStatus(err)
	if status >= 500 {
		s.log.Warn("Consul request failed", "method", r.Method, "path", r.URL.Path, "status", status, "error", err)
	}
	writeError(w, status, code, msg)
}

func errorStatus(err error) (int, string, string) {
	switch {
	case errors.Is(err, binder.ErrInvalid):
		return http.StatusBadRequest, "", err.Error()
	case errors.Is(err, binder.ErrForbidden):
		return http.StatusForbidden, wire.CodeForbidden, "Permission denied: " + err.Error()
	case errors.Is(err, binder.ErrUnknownID), errors.Is(err, binder.ErrUnknownService):
		return http.StatusNotFound, "", err.Error()
	case errors.Is(err, binder.ErrUnknownCheck):
		return http.StatusNotFound, wire.CodeUnknownCheck, err.Error()
	case errors.Is(err, binder.ErrNoLeader), errors.Is(err, binder.ErrNotLeader):
		return http.StatusInternalServerError, wire.CodeNoLeader, fmt.Sprintf("No cluster leader (%v)", err)
	case errors.Is(err, binder.ErrStale):
		return http.StatusInternalServerError, wire.CodeStale, fmt.Sprintf("No cluster leader (%v); ?stale reads this node's table anyway", err)
	case errors.Is(err, binder.ErrCatchingUp):
		return http.StatusInternalServerError, wire.CodeCatchingUp, fmt.Sprintf("%v; ?stale reads this node's table anyway", err)
	case errors.Is(err, binder.ErrOutcomeUnknown):
		return http.StatusInternalServerError, wire.CodeOutcomeUnknown, err.Error()
	case errors.Is(err, binder.ErrUpgrading):
		return http.StatusInternalServerError, wire.CodeUpgrading, err.Error()
	}
	return http.StatusInternalServerError, "", err.Error()
}
