package consul

import (
	"context"
	"net/http"
)

// members returns the leader's id and the cluster's members without
// asking any of them anything: Cluster asks each member for its state,
// which the status endpoints do not show, so it gets a context that has
// already ended and each member's state comes back "unknown" at once.
func (s *Server) members() (string, []memberAddr) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	leader, members := s.b.Cluster(ctx)
	out := make([]memberAddr, 0, len(members))
	for _, m := range members {
		out = append(out, memberAddr{id: m.ID, raft: m.RaftAddr, voter: m.Voter})
	}
	return leader, out
}

type memberAddr struct {
	id, raft string
	voter    bool
}

// leaderAddr is the leader's Raft address, "" when there is none.
func leaderAddr(leader string, members []memberAddr) string {
	for _, m := range members {
		if leader != "" && m.id == leader {
			return m.raft
		}
	}
	return ""
}

// statusRead runs the checks of a status read: datacenter, and a read
// token with AuthReads. Consul answers status from a server's own view,
// in no consistency mode.
func (s *Server) statusRead(w http.ResponseWriter, r *http.Request) bool {
	return s.datacenterOK(w, r) && s.allowRead(w, r, "operator:read", "")
}

// GET /v1/status/leader: the leader's Raft address as a JSON string, ""
// when this node knows no leader.
func (s *Server) statusLeader(w http.ResponseWriter, r *http.Request) {
	if !s.statusRead(w, r) {
		return
	}
	writeJSON(w, http.StatusOK, leaderAddr(s.members()))
}

// GET /v1/status/peers: the Raft addresses of the voters.
func (s *Server) statusPeers(w http.ResponseWriter, r *http.Request) {
	if !s.statusRead(w, r) {
		return
	}
	_, members := s.members()
	out := []string{}
	for _, m := range members {
		if m.voter {
			out = append(out, m.raft)
		}
	}
	writeJSON(w, http.StatusOK, out)
}
