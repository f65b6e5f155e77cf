package wire

// Roles of a server in the Raft configuration (Member.Role, RaftPeer.Role).
const (
	// RoleVoter: votes, counts toward the quorum, may lead.
	RoleVoter = "voter"
	// RoleNonvoter: a read replica; applies the log and serves reads, never
	// votes, never counts toward the quorum.
	RoleNonvoter = "nonvoter"
)

// RaftPeersResponse answers GET /v1/cluster/peers.
type RaftPeersResponse struct {
	// Leader is the leader's id as the answering node knows it, "" when
	// none.
	Leader string     `json:"leader"`
	Peers  []RaftPeer `json:"peers"`
}

// RaftPeer is one server of the Raft configuration and its own view of
// itself.
type RaftPeer struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	Voter    bool   `json:"voter"`
	Role     string `json:"role"`
	Leader   bool   `json:"leader"`
	// Reachable: the server answered its /v1/status. The fields after
	// State are its answer, meaningless (zero) when it did not.
	Reachable bool   `json:"reachable"`
	State     string `json:"state"`
	// LastContactMs: milliseconds since the server last heard from a
	// leader (0 on the leader, -1 never).
	LastContactMs int64  `json:"last_contact_ms"`
	LastIndex     uint64 `json:"last_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	// UnheardMs: the leader's view, milliseconds since it last heard from
	// this server over Raft; omitted while it does.
	UnheardMs int64 `json:"unheard_ms,omitempty"`
}

// TransferLeaderResponse answers POST /v1/cluster/transfer-leader.
type TransferLeaderResponse struct {
	Leader string `json:"leader"`
}
