// Package client is the Go client of lieur's binder: it registers
// application servers, resolves service types to instances, reports dead
// instances and watches the service table, over the binder's HTTP API
// (version 1, see package transport/wire).
//
// A Client knows a fixed list of binder nodes. Every call picks them in a
// fresh random order and fails over to the next one when a node is
// unreachable or answers 5xx, so callers never need to know which node
// leads the Raft cluster. A 4xx answer is final and is returned as an
// *APIError.
//
// Writes that are not idempotent (Deregister, ReportDown) are never sent
// twice once a node may have received them: if the outcome cannot be known
// the call fails with an error wrapping ErrOutcomeUnknown, and the caller
// decides whether to check and retry. Register is idempotent by id (the
// client chooses the id when the caller does not), so it always fails over.
//
// Resolve caches one instance per service type and returns it without
// network traffic until ReportDown or Forget drops it.
//
// The package depends on nothing from lieur but transport/wire.
package client
