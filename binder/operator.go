package binder

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// What an operator does to the Raft configuration besides joining and
// removing (membership.go): read replicas (nonvoters), promotion and
// demotion, leadership transfer, and the peer list with each member's own
// view. Configuration changes run on the leader; a follower forwards them
// through onLeader, like Join.
//
// A nonvoter (Config.Nonvoter, raft AddNonvoter) receives the log and
// applies it like any follower, so it serves lookups, lists, DNS and the
// Consul views from its own memory (ReadAllowed applies to it as to every
// follower: it has caught up and heard from a leader within MaxStaleness)
// and forwards writes. It never votes, never starts an election and never
// counts toward a quorum: raft counts only voters for commitment,
// elections, VerifyLeader and leadership transfer, and so does this
// package (voters, the quorum checks of demotion, removal and dead-server
// cleanup).
//
// The rules that keep the cluster able to commit:
//   - the leader cannot be demoted or removed: transfer leadership first;
//   - a voter is demoted or removed only if the voters left include a
//     quorum of themselves that the leader hears from (quorumWithout);
//   - a demotion never takes a cluster of three voters or more below
//     three (remove does, for an operator who means it);
//   - a nonvoter is promoted only while the leader hears from it: a dead
//     voter added to the quorum would only make it harder to reach.

// ErrNotMember is returned for a server id the Raft configuration does not
// hold. It also matches ErrUnknownID, so the API answers 404 for it.
var ErrNotMember error = notMemberError{}

type notMemberError struct{}

func (notMemberError) Error() string        { return "not a member of the cluster" }
func (notMemberError) Is(target error) bool { return target == ErrUnknownID }

// Roles of a server in the Raft configuration, as the API names them.
const (
	RoleVoter    = "voter"
	RoleNonvoter = "nonvoter"
)

func roleName(s raft.ServerSuffrage) string {
	if s == raft.Voter {
		return RoleVoter
	}
	return RoleNonvoter
}

// OperatorPeer is implemented by a Peer that can forward operator requests
// to the leader (transport/httpapi's PeerClient does). Without it those
// requests succeed only on the leader itself.
type OperatorPeer interface {
	// Promote asks the leader at httpAddr to make nonvoter id a voter.
	Promote(ctx context.Context, httpAddr, id string) error
	// Demote asks the leader at httpAddr to make voter id a nonvoter.
	Demote(ctx context.Context, httpAddr, id string) error
	// TransferLeadership asks the leader at httpAddr to hand leadership to
	// voter to ("": to the most up-to-date other voter) and returns the
	// new leader's id.
	TransferLeadership(ctx context.Context, httpAddr, to string) (string, error)
}

// RaftPeer is one server of the Raft configuration with its own view of
// itself, as RaftPeers reports it.
type RaftPeer struct {
	ID       string
	RaftAddr string
	HTTPAddr string
	Voter    bool
	Leader   bool // the leader, as the answering node knows it
	// Reachable: the member answered its /v1/status (always true for the
	// answering node). State, LastContact, LastIndex and AppliedIndex are
	// its answer, zero when it did not answer.
	Reachable bool
	State     string
	// LastContact is how long ago the member last heard from a leader (0
	// on the leader, -1 never).
	LastContact  time.Duration
	LastIndex    uint64
	AppliedIndex uint64
	// Unheard is the leader's view: how long since it last heard from this
	// member over Raft; 0 while it does (and when the leader could not be
	// asked).
	Unheard time.Duration
}

// servers returns this node's latest Raft configuration.
func (n *Node) servers() ([]raft.Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	return f.Configuration().Servers, nil
}

func find(servers []raft.Server, id string) (raft.Server, bool) {
	for _, s := range servers {
		if string(s.ID) == id {
			return s, true
		}
	}
	return raft.Server{}, false
}

func countVoters(servers []raft.Server) int {
	c := 0
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			c++
		}
	}
	return c
}

// quorumWithout says why the voters other than id would not include a
// quorum of themselves that the leader hears from (unheard: the followers
// it does not hear from; the leader hears itself), nil if they would. A
// change that took id's vote away then would commit, and nothing after it.
func quorumWithout(servers []raft.Server, id string, unheard map[string]time.Duration) error {
	left, heard := 0, 0
	for _, s := range servers {
		if s.Suffrage != raft.Voter || string(s.ID) == id {
			continue
		}
		left++
		if _, failing := unheard[string(s.ID)]; !failing {
			heard++
		}
	}
	if left == 0 {
		return errors.New("it is the only voter")
	}
	if q := left/2 + 1; heard < q {
		return fmt.Errorf("it would leave %d voters of which the leader hears from %d, below their quorum of %d", left, heard, q)
	}
	return nil
}

// removalRefusal is the check of an operator's removal of id, on the
// leader: a voter goes only if the voters left keep a quorum the leader
// hears from.
func (n *Node) removalRefusal(id string) error {
	servers, err := n.servers()
	if err != nil {
		return err
	}
	if s, ok := find(servers, id); !ok || s.Suffrage != raft.Voter {
		return nil
	}
	if err := quorumWithout(servers, id, n.localUnheard()); err != nil {
		return fmt.Errorf("%w: remove %s: %v", ErrInvalid, id, err)
	}
	return nil
}

// forwardOperator runs an operator request on the leader through the Peer. The
// leader's 404 comes back as a bare ErrUnknownID; it is about a member.
func (n *Node) forwardOperator(what string, call func(OperatorPeer) error) error {
	op, ok := n.cfg.Peer.(OperatorPeer)
	if !ok {
		return fmt.Errorf("%w: %s: this binder cannot forward operator requests; send it to the leader", ErrInvalid, what)
	}
	err := call(op)
	if errors.Is(err, ErrUnknownID) && !errors.Is(err, ErrNotMember) {
		return fmt.Errorf("%s: %w", what, ErrNotMember)
	}
	return err
}

// Promote makes the nonvoter id a voter (raft AddVoter). Promoting a voter
// changes nothing. On a follower it is forwarded to the leader.
func (n *Node) Promote(ctx context.Context, id string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	what := "promote " + id
	return n.onLeader(ctx, what,
		func() error { return n.promoteLocal(id) },
		func(addr string) error {
			return n.forwardOperator(what, func(op OperatorPeer) error { return op.Promote(ctx, addr, id) })
		})
}

func (n *Node) promoteLocal(id string) error {
	servers, err := n.servers()
	if err != nil {
		return err
	}
	s, ok := find(servers, id)
	if !ok {
		return fmt.Errorf("promote %s: %w", id, ErrNotMember)
	}
	if s.Suffrage == raft.Voter {
		return nil
	}
	if d, failing := n.localUnheard()[id]; failing {
		return fmt.Errorf("%w: promote %s: the leader has not heard from it for %s", ErrInvalid, id, d.Round(time.Millisecond))
	}
	if err := n.raft.AddVoter(s.ID, s.Address, 0, membershipTimeout).Error(); err != nil {
		return membershipErr("promote "+id, err)
	}
	n.log.Info("promoted to voter", "id", id)
	return nil
}

// Demote makes the voter id a nonvoter (raft DemoteVoter): it keeps
// applying the log and serving reads, and stops voting. Demoting a
// nonvoter changes nothing. See the rules at the top of this file. On a
// follower it is forwarded to the leader.
func (n *Node) Demote(ctx context.Context, id string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	what := "demote " + id
	return n.onLeader(ctx, what,
		func() error { return n.demoteLocal(id) },
		func(addr string) error {
			return n.forwardOperator(what, func(op OperatorPeer) error { return op.Demote(ctx, addr, id) })
		})
}

func (n *Node) demoteLocal(id string) error {
	servers, err := n.servers()
	if err != nil {
		return err
	}
	s, ok := find(servers, id)
	if !ok {
		return fmt.Errorf("demote %s: %w", id, ErrNotMember)
	}
	if s.Suffrage != raft.Voter {
		return nil
	}
	if id == n.cfg.ID {
		return fmt.Errorf("%w: demote %s: it is the leader; transfer leadership first", ErrInvalid, id)
	}
	if v := countVoters(servers); v >= minVoters && v-1 < minVoters {
		return fmt.Errorf("%w: demote %s: it would leave %d voters; demotion keeps at least %d (remove the server to run with fewer)", ErrInvalid, id, v-1, minVoters)
	}
	if err := quorumWithout(servers, id, n.localUnheard()); err != nil {
		return fmt.Errorf("%w: demote %s: %v", ErrInvalid, id, err)
	}
	if err := n.raft.DemoteVoter(s.ID, 0, membershipTimeout).Error(); err != nil {
		return membershipErr("demote "+id, err)
	}
	n.log.Info("demoted to nonvoter", "id", id)
	return nil
}

// TransferLeadership hands leadership to voter to, or with to "" to the
// most up-to-date other voter (raft LeadershipTransferToServer,
// LeadershipTransfer), and returns the new leader's id once this node sees
// it lead. A nonvoter cannot lead. Naming the current leader changes
// nothing. On a follower it is forwarded to the leader.
//
// When another server than the one asked for wins the election (or this
// one again), the attempt fails with ErrNotLeader and onLeader tries again
// from the new leader, within the write hold. A failure of raft's own
// transfer is ErrOutcomeUnknown: the target may still win.
func (n *Node) TransferLeadership(ctx context.Context, to string) (string, error) {
	if to != "" {
		if err := ValidateID(to); err != nil {
			return "", err
		}
	}
	var leader string
	err := n.onLeader(ctx, "transfer leadership",
		func() error {
			var err error
			leader, err = n.transferLocal(ctx, to)
			return err
		},
		func(addr string) error {
			return n.forwardOperator("transfer leadership to "+to, func(op OperatorPeer) error {
				var err error
				leader, err = op.TransferLeadership(ctx, addr, to)
				return err
			})
		})
	return leader, err
}

func (n *Node) transferLocal(ctx context.Context, to string) (string, error) {
	servers, err := n.servers()
	if err != nil {
		return "", err
	}
	start := n.raft.LeadershipTransfer
	if to == "" {
		if countVoters(servers) < 2 {
			return "", fmt.Errorf("%w: transfer leadership: there is no other voter", ErrInvalid)
		}
	} else {
		if to == n.cfg.ID {
			return to, nil
		}
		s, ok := find(servers, to)
		if !ok {
			return "", fmt.Errorf("transfer leadership to %s: %w", to, ErrNotMember)
		}
		if s.Suffrage != raft.Voter {
			return "", fmt.Errorf("%w: transfer leadership: %s is a nonvoter and cannot lead; promote it first", ErrInvalid, to)
		}
		start = func() raft.Future { return n.raft.LeadershipTransferToServer(s.ID, s.Address) }
	}
	// raft gives a transfer one election timeout; a target slow to win
	// its election (a loaded host) makes it time out with this node still
	// leading, and then a new attempt is as safe as the first.
	const attempts = 3
	for attempt := 1; ; attempt++ {
		err := start().Error()
		if err == nil {
			break
		}
		if errors.Is(err, raft.ErrNotLeader) {
			// Nothing was started: the request may go to the new leader.
			return "", fmt.Errorf("transfer leadership: %w", ErrNotLeader)
		}
		if attempt < attempts && ctx.Err() == nil && n.raft.State() == raft.Leader {
			n.log.Warn("leadership transfer failed; trying again", "to", to, "attempt", attempt, "error", err)
			continue
		}
		return "", fmt.Errorf("transfer leadership: %w: %v", ErrOutcomeUnknown, err)
	}
	wctx, cancel := context.WithTimeout(ctx, n.cfg.WriteHold)
	defer cancel()
	for {
		_, id := n.raft.LeaderWithID()
		switch {
		case id == "":
		case string(id) == n.cfg.ID:
			if n.raft.State() == raft.Leader {
				return "", fmt.Errorf("transfer leadership: %w: %s was elected again", ErrNotLeader, id)
			}
		case to != "" && string(id) != to:
			return "", fmt.Errorf("transfer leadership: %w: %s was elected instead of %s", ErrNotLeader, id, to)
		default:
			n.log.Info("leadership handed over", "to", id)
			return string(id), nil
		}
		if !sleepCtx(wctx, 10*time.Millisecond) {
			return "", fmt.Errorf("transfer leadership: %w: handed over, but no new leader seen within %s", ErrOutcomeUnknown, n.cfg.WriteHold)
		}
	}
}

// RaftPeers returns the leader's id as this node knows it and every server
// of this node's Raft configuration with its own view of itself, asked
// over its HTTP API with a short timeout (Reachable false when it does not
// answer), and the leader's record of the servers it does not hear from.
// It needs no leader: an operator reads it when the quorum is lost.
func (n *Node) RaftPeers(ctx context.Context) (string, []RaftPeer) {
	_, leader := n.raft.LeaderWithID()
	members := n.members()
	out := make([]RaftPeer, len(members))
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var leaderView map[string]time.Duration // the leader's Status.Unheard
	var mu sync.Mutex
	for i, m := range members {
		p := &out[i]
		*p = RaftPeer{ID: m.ID, RaftAddr: m.RaftAddr, HTTPAddr: m.HTTPAddr, Voter: m.Voter, Leader: m.ID == string(leader)}
		if m.ID == n.cfg.ID {
			p.Reachable, p.State = true, stateName(n.raft.State())
			p.LastContact, p.LastIndex, p.AppliedIndex = n.LastContact(), n.raft.LastIndex(), n.raft.AppliedIndex()
			continue
		}
		if m.HTTPAddr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := n.cfg.Peer.Status(ctx, p.HTTPAddr)
			if err != nil {
				return
			}
			p.Reachable, p.State = true, st.State
			p.LastContact, p.LastIndex, p.AppliedIndex = st.LastContact, st.LastLogIndex, st.AppliedIndex
			if p.Leader {
				mu.Lock()
				leaderView = st.Unheard
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if n.raft.State() == raft.Leader {
		leaderView = n.localUnheard()
	}
	for i := range out {
		out[i].Unheard = leaderView[out[i].ID]
	}
	return string(leader), out
}
