package binder

import "time"

// NoteFailedHeartbeat records, as if raft had observed it on this leader, a
// failed heartbeat to id whose last success was at lastContact: a record
// no "resumed" observation will clear, as when one is lost.
func (n *Node) NoteFailedHeartbeat(id string, lastContact time.Time) {
	n.dead.failed(n.lead.generation(), id, lastContact, time.Now())
}
