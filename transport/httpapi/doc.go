// Package httpapi serves lieur's HTTP API, version 1, in front of a binder
// node, and implements binder.Peer: the HTTP calls a node makes to another
// (forwarding a write to the leader, joining, reading a peer's status).
//
// It knows a node only through the Binder interface. Every error it returns
// is a JSON body {"error": "..."} with a fitting status, unknown paths and
// wrong methods included.
package httpapi
