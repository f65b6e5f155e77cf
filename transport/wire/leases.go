package wire

// GET /v1/leases: how long ago each lease was last renewed, as the leader
// measures it. Heartbeats never go through the log, so no other node
// knows; a follower forwards the question (with HeaderLeaderOnly).

// LeasesResponse answers GET /v1/leases.
type LeasesResponse struct {
	// Leader is the id of the binder that measured the ages: the leader
	// when it answered.
	Leader string `json:"leader"`
	// Leases holds every leased instance (of the type asked for) by id;
	// an instance without a lease is absent. Empty, never null.
	Leases map[string]LeaseAge `json:"leases"`
}

// LeaseAge is one lease's clock on the leader when it answered.
type LeaseAge struct {
	// AgeMs is the milliseconds since the lease was last renewed by what
	// Since names.
	AgeMs int64 `json:"age_ms"`
	// Since is what last started the lease's clock: "heartbeat" (one this
	// leader received), "registration" (registered, or restored, while
	// this leader led; no heartbeat since) or "leadership" (this binder
	// became leader then, and no heartbeat has reached it since: a new
	// leader knows none from before its term).
	Since string `json:"since"`
	// TTLMs is the lease's TTL.
	TTLMs int64 `json:"ttl_ms"`
}
