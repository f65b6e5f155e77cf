// Package dns answers DNS queries for service types from a binder's local
// memory, as lookups do: no Raft round trip, and answers keep coming
// through elections while the node serves default reads. See docs/dns.md.
package dns
