// Package binder is one lieur node: a hashicorp/raft member whose FSM (package
// fsm) holds the service table, plus everything a node does around it:
//
//   - writes: validated, applied through the Raft log on the leader, or
//     forwarded to the leader (through the Peer interface) when this node
//     follows; during an election a write waits for a leader up to a hold
//     timeout;
//   - reads: lookups and lists from local memory, round-robin cursors kept
//     per node, blocking queries woken per service type;
//   - down-reports: a probe of the registered address, joined by concurrent
//     reports of the same id, then a removal through the log that names the
//     registration it verified;
//   - membership: bootstrap, join, replacement of a node that lost its data.
//
// The package knows nothing about HTTP: transport/httpapi serves a Node and
// implements Peer.
package binder
