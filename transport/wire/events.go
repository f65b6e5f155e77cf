package wire

// Event kinds of GET /v1/events.
const (
	EventRegistered = "registered"
	EventRemoved    = "removed"
	EventHealth     = "health"
)

// EventTimeFormat is how an event's time is written: UTC, milliseconds.
const EventTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// EventsResponse answers GET /v1/events: the answering binder's recent
// history of the table, newest first.
type EventsResponse struct {
	// Index is the index of the newest event the binder holds (0: none),
	// also sent as X-Lieur-Index; pass it back as ?index= to wait for the
	// next ones.
	Index uint64 `json:"index"`
	// Oldest is the lowest index from which on the binder holds every
	// event (0: none): one more than the newest index whose events (all
	// or some) were dropped from the ring, or, while none ever was, the
	// oldest event's index. A client that saw every event up to index N
	// missed some exactly when N < Oldest-1.
	Oldest uint64  `json:"oldest"`
	Events []Event `json:"events"`
}

// Event is one change to the table, as one binder applied it.
type Event struct {
	// Index is the Raft index of the entry (or restored snapshot) that
	// carried the change; the changes of one entry share it.
	Index uint64 `json:"index"`
	// Time is the answering binder's clock when it applied the change
	// (EventTimeFormat); the log itself carries no time.
	Time    string `json:"time"`
	Kind    string `json:"kind"`
	ID      string `json:"id"`
	Type    string `json:"type"`
	Address string `json:"address"`
	Port    int    `json:"port"`
	// Health, on health events only: "stale-lease", "passing", "warning"
	// or "critical".
	Health string `json:"health,omitempty"`
	// Reason: "" or "replaced" for registered; deregistered,
	// reported-down, expired, critical-too-long, restored or
	// snapshot-restore for removed; lease-stale, lease-renewed or check
	// for health.
	Reason string `json:"reason"`
}

// ClusterStatusResponse answers GET /v1/cluster/status: every member's own
// /v1/status, as the answering binder could fetch it.
type ClusterStatusResponse struct {
	// Binder is the answering binder's id.
	Binder string `json:"binder"`
	// Leader is the leader's id as the answering binder knows it, "" when
	// it knows none.
	Leader  string         `json:"leader"`
	Members []MemberStatus `json:"members"`
}

// MemberStatus is one member of the configuration with its own status,
// or the reason it could not be had.
type MemberStatus struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	Voter    bool   `json:"voter"`
	// Reachable: Status is the member's answer; otherwise Error says why
	// there is none.
	Reachable bool    `json:"reachable"`
	Status    *Status `json:"status,omitempty"`
	Error     string  `json:"error,omitempty"`
}
