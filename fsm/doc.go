// Package fsm holds lieur's service table: the replicated state machine that
// every binder applies from the Raft log.
//
// The package is pure: it does no I/O, reads no clock and draws no random
// numbers. Every command carries what it needs (ids, the registration index a
// removal verified, node addresses), so applying the same log gives the same
// table, the same indexes and the same TableHash on every node.
//
// Commands are JSON envelopes with an explicit, versioned type tag
// ("register/v1", ...). Snapshots carry a format version; Restore refuses a
// version it does not know rather than guessing.
package fsm
