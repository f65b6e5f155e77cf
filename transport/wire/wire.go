// Package wire defines the JSON bodies, headers and error codes of lieur's
// HTTP API, version 1. The server (transport/httpapi) and the Go client
// (client) both speak through these types; nothing else lives here.
package wire

import "encoding/json"

// QueryMinIndex is the query parameter of a read that must reflect at
// least that Raft index: a client passes the highest index its own writes
// and reports returned, and reads what it wrote from any node.
const QueryMinIndex = "min_index"

// Headers sent by the server.
const (
	// HeaderIndex carries the Raft index of the last change to what a
	// response returns; a blocking query passes it back as ?index=.
	HeaderIndex = "X-Lieur-Index"
	// HeaderLastContact carries the milliseconds since the answering node
	// last heard from the leader (0 on the leader), so a client can judge
	// how fresh a read is.
	HeaderLastContact = "X-Lieur-Last-Contact"
	// HeaderRequestID carries an idempotency key on a deregistration: the
	// cluster applies a deregistration with a given key once, however often
	// it is sent, so a client may resend one whose outcome it did not learn.
	HeaderRequestID = "X-Lieur-Request-Id"
	// HeaderCluster carries the cluster's id on the calls binders make to
	// each other's internal endpoints when no token file gives them a
	// credential: a stranger who can reach the port does not know it.
	HeaderCluster = "X-Lieur-Cluster"
	// HeaderScope carries, on a heartbeat a binder forwards to the leader
	// with the cluster's credential, the service types its caller's token
	// is bound to (comma-separated), so the leader decides as if it had
	// received the call itself.
	HeaderScope = "X-Lieur-Scope"
)

// Error codes carried beside the message in an error body, for callers that
// must tell apart errors with the same status.
const (
	// CodeNoLeader: the cluster has no leader right now; the write was not
	// applied and may be retried.
	CodeNoLeader = "no_leader"
	// CodeNotLeader: this node is not the leader (internal apply only); the
	// write was not applied.
	CodeNotLeader = "not_leader"
	// CodeOutcomeUnknown: the write may or may not have been applied.
	CodeOutcomeUnknown = "outcome_unknown"
	// CodeSuperseded: a removal named a registration that was replaced.
	CodeSuperseded = "superseded"
	// CodeBehind: the node has not applied the min_index a read asked for;
	// another node may have.
	CodeBehind = "behind"
	// CodeCatchingUp: the node restarted and has not yet applied what the
	// leader had committed; ?stale=true reads it anyway.
	CodeCatchingUp = "catching_up"
	// CodeStale: the node has not heard from a leader recently (it may be
	// cut off); ?stale=true reads it anyway.
	CodeStale = "stale"
	// CodeNotCluster: an internal endpoint was called without the
	// cluster's credential or id (403). A binder that has not yet learned
	// the id retries.
	CodeNotCluster = "not_cluster"
	// CodeForbidden: the token may not act on the instance's type (403);
	// the table is unchanged.
	CodeForbidden = "forbidden"
	// CodeUnknownCheck: no instance has the check id (404).
	CodeUnknownCheck = "unknown_check"
	// CodeUpgrading: the write needs every binder to run a build that
	// applies it (tags, checks), and one does not yet (503); not applied.
	CodeUpgrading = "upgrading"
)

// Error is the body of every non-2xx response.
type Error struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

// RegisterRequest is the body of POST /v1/services.
type RegisterRequest struct {
	Type    string            `json:"type"`
	Address string            `json:"address"`
	Port    int               `json:"port"`
	ID      string            `json:"id,omitempty"`
	Meta    map[string]string `json:"meta,omitempty"`
	// TTL, e.g. "10s" (1s to 1h), makes the registration a lease: renew it
	// with PUT /v1/services/{id}/heartbeat.
	TTL string `json:"ttl,omitempty"`
}

// RegisterResponse answers POST /v1/services.
type RegisterResponse struct {
	ID    string `json:"id"`
	Index uint64 `json:"index"`
}

// IndexResponse answers writes that only report the committing index.
type IndexResponse struct {
	Index uint64 `json:"index"`
}

// Instance is one registered application server.
type Instance struct {
	ID      string            `json:"id"`
	Type    string            `json:"type"`
	Address string            `json:"address"`
	Port    int               `json:"port"`
	Meta    map[string]string `json:"meta"`
	// TTL of a leased registration ("10s"); absent without a lease.
	TTL string `json:"ttl,omitempty"`
	// Health is "stale-lease" when the lease passed without a heartbeat
	// but the instance still answered a probe; absent when healthy.
	Health string `json:"health,omitempty"`
	// Flaps counts the times the lease went stale and recovered.
	Flaps int `json:"flaps,omitempty"`
	// Status is the instance's health: "passing", "warning" (a stale
	// lease, or a check in warning) or "critical" (a check critical:
	// lookups skip it).
	Status string `json:"status"`
	// Tags and Checks come from Consul-shaped registrations.
	Tags   []string `json:"tags,omitempty"`
	Checks []Check  `json:"checks,omitempty"`
}

// Check is one health check of an instance, as lieur's API shows it.
type Check struct {
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	Kind   string `json:"kind"`
	Status string `json:"status"`
	Output string `json:"output,omitempty"`
}

// ServicesResponse answers GET /v1/services and GET /v1/services/{type}.
type ServicesResponse struct {
	Services []Instance `json:"services"`
}

// ReportRequest is the body of POST /v1/reports.
type ReportRequest struct {
	ID string `json:"id"`
}

// Verdicts of a down-report.
const (
	VerdictRemoved = "removed"
	VerdictAlive   = "alive"
	VerdictUnknown = "unknown"
)

// ReportResponse answers POST /v1/reports. Index is the Raft index of the
// removal when the verdict is "removed" (0 when it cannot be known, e.g.
// the instance was already gone).
type ReportResponse struct {
	ID      string `json:"id"`
	Verdict string `json:"verdict"`
	Index   uint64 `json:"index,omitempty"`
}

// Member is one server of the cluster.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	Voter    bool   `json:"voter"`
	State    string `json:"state"`
	// Role is RoleVoter or RoleNonvoter (a read replica).
	Role string `json:"role"`
	// UnheardMs: how long the leader has not heard from this server over
	// Raft; omitted while it does.
	UnheardMs int64 `json:"unheard_ms,omitempty"`
}

// ClusterResponse answers GET /v1/cluster.
type ClusterResponse struct {
	Leader  string   `json:"leader"`
	Members []Member `json:"members"`
}

// Status answers GET /v1/status: one node's view.
type Status struct {
	ID           string `json:"id"`
	State        string `json:"state"`
	Leader       string `json:"leader"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
	LastLogIndex uint64 `json:"last_log_index"`
	Services     int    `json:"services"`
	TableHash    string `json:"table_hash"`
	// CaughtUp is false on a node that restarted and has not yet applied
	// what the leader had committed; it then refuses default reads.
	CaughtUp bool `json:"caught_up"`
	// LastContactMs is the milliseconds since this node last heard from
	// the leader: 0 on the leader, -1 when it never has.
	LastContactMs int64 `json:"last_contact_ms"`
	// LeaseGuard, on the leader: per type, the leases the mass-expiry
	// guard holds back one more TTL.
	LeaseGuard map[string]int `json:"lease_guard,omitempty"`
	// VerificationHold: this node's probes fail for most instances, so it
	// holds the removals reports would make.
	VerificationHold bool `json:"verification_hold"`
	// LogFormat is the newest log format every member has announced it
	// applies (2 once all run a build with cluster ids and scopes); during
	// a rolling upgrade it shows when the last old build is gone.
	LogFormat int `json:"log_format"`
	// ClusterIDKnown: this node has applied the cluster's id (the id
	// itself is never served).
	ClusterIDKnown bool `json:"cluster_id_known"`
	// UnheardMs, on the leader: the servers it does not hear from over
	// Raft, with the milliseconds since it last did; omitted when none.
	UnheardMs map[string]int64 `json:"unheard_ms,omitempty"`
}

// CheckUpdateRequest is the body of PUT /v1/internal/check/{id}: a ttl
// check's report forwarded to the leader.
type CheckUpdateRequest struct {
	Status string `json:"status"`
	Output string `json:"output,omitempty"`
}

// JoinRequest is the body of POST /v1/cluster/join.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	// Nonvoter joins the server as a read replica (lieur agent --nonvoter).
	Nonvoter bool `json:"nonvoter,omitempty"`
}

// ApplyRequest is the body of POST /v1/internal/apply: a follower forwards
// an encoded log command to the leader.
type ApplyRequest struct {
	Command json.RawMessage `json:"command,omitempty"`
	// Commands, instead of Command: a follower's batch of forwarded
	// writes, answered by an ApplyBatchResponse.
	Commands []json.RawMessage `json:"commands,omitempty"`
}

// ApplyBatchResponse answers a batch: one result per command, in order.
type ApplyBatchResponse struct {
	Results []ApplyResult `json:"results"`
}

// ApplyResult is one forwarded command's outcome: its index, or the status
// and error body it would have had alone.
type ApplyResult struct {
	Index  uint64 `json:"index,omitempty"`
	Status int    `json:"status"`
	Error  string `json:"error,omitempty"`
	Code   string `json:"code,omitempty"`
}
