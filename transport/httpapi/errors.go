package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/wire"
)

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
	case errors.Is(err, binder.ErrUnknownCheck):
		status, code = http.StatusNotFound, wire.CodeUnknownCheck
	case errors.Is(err, binder.ErrForbidden):
		status, code = http.StatusForbidden, wire.CodeForbidden
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
	case errors.Is(err, binder.ErrUpgrading):
		status, code = http.StatusServiceUnavailable, wire.CodeUpgrading
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
	// A body without a JSON Content-Type was refused before routing; an
	// empty one gets the clearer "body is empty" below.
	if r.Header.Get("Content-Type") != "" && !IsJSON(r) {
		unsupportedMediaType(w, r)
		return false
	}
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, wire.Error{Error: msg, Code: code})
}
