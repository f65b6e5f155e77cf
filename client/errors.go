package client

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/lieur/lieur/transport/wire"
)

var (
	// ErrUnknownService: no instance of the service type is registered
	// (a 404 from a lookup or a per-type listing).
	ErrUnknownService = errors.New("unknown service type")
	// ErrUnknownID: no registration has the id (a 404 from a deregistration
	// or a down-report).
	ErrUnknownID = errors.New("unknown service id")
	// ErrOutcomeUnknown: a write may or may not have been applied; the
	// client did not resend it.
	ErrOutcomeUnknown = errors.New("write outcome unknown")
	// ErrNoBinder: every binder was tried and none answered usefully. The
	// error also wraps the last failure.
	ErrNoBinder = errors.New("no binder answered")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("client closed")
)

// APIError is a final (non-retried) error answer from a binder, or the last
// 5xx answer wrapped inside ErrNoBinder.
//
// errors.Is matches it against ErrUnknownService or ErrUnknownID when the
// status is 404 and the call names a service type or an id respectively, and
// against ErrOutcomeUnknown when Code is wire.CodeOutcomeUnknown.
type APIError struct {
	Status  int    // HTTP status code
	Message string // the "error" field of the body (or the raw body)
	Code    string // the "code" field of the body; may be empty
	Binder  string // base URL of the binder that answered
	Method  string // the request's method
	Path    string // the request's path, without the query

	notFound error // the sentinel a 404 stands for in this call, if any
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("client: %s %s via %s: %d %s: %s",
		e.Method, e.Path, e.Binder, e.Status, http.StatusText(e.Status), e.Message)
	if e.Code != "" {
		msg += " (" + e.Code + ")"
	}
	return msg
}

// Is lets errors.Is map the status and code onto the package's sentinels.
func (e *APIError) Is(target error) bool {
	switch {
	case target == nil:
		return false
	case e.Status == http.StatusNotFound && e.notFound != nil && target == e.notFound:
		return true
	case e.Code == wire.CodeOutcomeUnknown && target == ErrOutcomeUnknown:
		return true
	}
	return false
}
