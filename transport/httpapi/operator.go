package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/wire"
)

// The operator endpoints (under /v1/cluster/): the peer list, promotion
// and demotion of read replicas, leadership transfer. Changes run on the
// leader (a follower forwards them, see binder/operator.go); all need the
// admin role when tokens are configured, since each one changes who votes
// or leads, and the peer list shows what an operator acts on.

// Operator is what the operator endpoints need of a node besides Binder.
// *binder.Node implements it; a Binder that does not gets no operator
// endpoint (404).
type Operator interface {
	Promote(ctx context.Context, id string) error
	Demote(ctx context.Context, id string) error
	TransferLeadership(ctx context.Context, to string) (string, error)
	RaftPeers(ctx context.Context) (string, []binder.RaftPeer)
}

var _ Operator = (*binder.Node)(nil)

// operatorRoutes registers the operator endpoints when the Binder has them.
func (s *Server) operatorRoutes() {
	op, ok := s.b.(Operator)
	if !ok {
		return
	}
	s.handle("GET /v1/cluster/peers", RoleAdmin, func(w http.ResponseWriter, r *http.Request) { s.raftPeers(w, r, op) })
	s.handle("POST /v1/cluster/members/{id}/promote", RoleAdmin, func(w http.ResponseWriter, r *http.Request) {
		s.changeRole(w, r, op.Promote, wire.RoleVoter)
	})
	s.handle("POST /v1/cluster/members/{id}/demote", RoleAdmin, func(w http.ResponseWriter, r *http.Request) {
		s.changeRole(w, r, op.Demote, wire.RoleNonvoter)
	})
	s.handle("POST /v1/cluster/transfer-leader", RoleAdmin, func(w http.ResponseWriter, r *http.Request) { s.transferLeader(w, r, op) })
}

func (s *Server) raftPeers(w http.ResponseWriter, r *http.Request, op Operator) {
	leader, peers := op.RaftPeers(r.Context())
	resp := wire.RaftPeersResponse{Leader: leader, Peers: make([]wire.RaftPeer, 0, len(peers))}
	for _, p := range peers {
		resp.Peers = append(resp.Peers, wire.RaftPeer{
			ID: p.ID, RaftAddr: p.RaftAddr, HTTPAddr: p.HTTPAddr, Voter: p.Voter, Role: roleOf(p.Voter),
			Leader: p.Leader, Reachable: p.Reachable, State: orUnknown(p.State), LastContactMs: millis(p.LastContact),
			LastIndex: p.LastIndex, AppliedIndex: p.AppliedIndex, UnheardMs: unheardMillis(p.Unheard),
		})
	}
	writeJSON(w, http.StatusOK, resp)
}

// changeRole answers a promotion or a demotion: {"id","role"} once the
// server has the role (it may already have had it).
func (s *Server) changeRole(w http.ResponseWriter, r *http.Request, change func(context.Context, string) error, role string) {
	id := r.PathValue("id")
	if err := change(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": id, "role": role})
}

func (s *Server) transferLeader(w http.ResponseWriter, r *http.Request, op Operator) {
	to := ""
	if vs, ok := r.URL.Query()["to"]; ok {
		// Checked here: an empty or repeated to would otherwise read as
		// "any voter", which moves leadership somewhere the caller did
		// not name.
		if len(vs) != 1 || vs[0] == "" {
			writeError(w, http.StatusBadRequest, "", "to must name one server, once (or be left out: any other voter)")
			return
		}
		to = vs[0]
	}
	leader, err := op.TransferLeadership(r.Context(), to)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.TransferLeaderResponse{Leader: leader})
}

func roleOf(voter bool) string {
	if voter {
		return wire.RoleVoter
	}
	return wire.RoleNonvoter
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// unheardMillis renders the leader's unheard time; a server it has just
// begun not to hear from shows 1, not 0, which would drop the field.
func unheardMillis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return max(d.Milliseconds(), 1)
}

func unheardMap(m map[string]time.Duration) map[string]int64 {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]int64, len(m))
	for id, d := range m {
		out[id] = unheardMillis(d)
	}
	return out
}

func unheardDurations(m map[string]int64) map[string]time.Duration {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]time.Duration, len(m))
	for id, ms := range m {
		if ms > 0 {
			out[id] = time.Duration(ms) * time.Millisecond
		}
	}
	return out
}

// fromMillis reads a last_contact_ms: -1 (never) stays negative.
func fromMillis(ms int64) time.Duration {
	if ms < 0 {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}

var _ binder.OperatorPeer = (*PeerClient)(nil)

// Promote asks the leader at httpAddr to make nonvoter id a voter.
func (p *PeerClient) Promote(ctx context.Context, httpAddr, id string) error {
	return p.do(ctx, http.MethodPost, p.base(httpAddr)+"/v1/cluster/members/"+url.PathEscape(id)+"/promote", nil, nil)
}

// Demote asks the leader at httpAddr to make voter id a nonvoter.
func (p *PeerClient) Demote(ctx context.Context, httpAddr, id string) error {
	return p.do(ctx, http.MethodPost, p.base(httpAddr)+"/v1/cluster/members/"+url.PathEscape(id)+"/demote", nil, nil)
}

// TransferLeadership asks the leader at httpAddr to hand leadership to to
// ("": any other voter) and returns the new leader.
func (p *PeerClient) TransferLeadership(ctx context.Context, httpAddr, to string) (string, error) {
	u := p.base(httpAddr) + "/v1/cluster/transfer-leader"
	if to != "" {
		u += "?to=" + url.QueryEscape(to)
	}
	var resp wire.TransferLeaderResponse
	if err := p.do(ctx, http.MethodPost, u, nil, &resp); err != nil {
		return "", err
	}
	if resp.Leader == "" {
		return "", fmt.Errorf("%w: %s answered no leader", binder.ErrOutcomeUnknown, u)
	}
	return resp.Leader, nil
}
