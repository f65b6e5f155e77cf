package binder

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/lieur/lieur/fsm"
)

// membershipTimeout bounds one configuration change.
const membershipTimeout = 10 * time.Second

// Join adds m as a voter, or as a nonvoter when m.Voter is false (a read
// replica, see operator.go). On a follower the request is forwarded to the
// leader. A server already known under m's id or Raft address is removed
// first: a node that lost its data must not keep its old identity, or it
// could vote twice in one term.
func (n *Node) Join(ctx context.Context, m Member) error {
	if m.ID == "" || m.RaftAddr == "" || m.HTTPAddr == "" {
		return fmt.Errorf("%w: id, raft_addr and http_addr are required", ErrInvalid)
	}
	if err := ValidateID(m.ID); err != nil {
		return err
	}
	// Checked before the voter is added: a configuration change made with
	// an address the log then refuses would leave a member nobody can
	// forward to.
	if host, port, err := net.SplitHostPort(m.RaftAddr); err != nil || host == "" || port == "" {
		return fmt.Errorf("%w: raft_addr %q is not host:port", ErrInvalid, m.RaftAddr)
	}
	if err := fsm.Validate(fsm.NodeMetaCmd{NodeID: m.ID, HTTPAddr: m.HTTPAddr}); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return n.onLeader(ctx, "join "+m.ID,
		func() error { return n.joinLocal(m) },
		func(addr string) error { return n.cfg.Peer.Join(ctx, addr, m) })
}

// onLeader runs local when this node leads and remote with the leader's
// HTTP address otherwise, retrying while there is no leader, up to the
// write hold timeout. Configuration changes only happen on the leader.
func (n *Node) onLeader(ctx context.Context, what string, local func() error, remote func(leaderHTTP string) error) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.WriteHold)
	defer cancel()
	for attempt := 1; ; attempt++ {
		var err error
		if n.raft.State() == raft.Leader {
			err = local()
		} else if addr, lerr := n.leaderHTTPAddr(); lerr != nil {
			err = lerr
		} else {
			err = remote(addr)
		}
		if err == nil || !(errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader)) {
			return err
		}
		if !sleepCtx(ctx, backoff(attempt)) {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
}

func (n *Node) joinLocal(m Member) error {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("read configuration: %w", err)
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) != m.ID && string(s.Address) != m.RaftAddr {
			continue
		}
		if s.ID == raft.ServerID(n.cfg.ID) {
			return fmt.Errorf("%w: %s (%s) is the leader itself", ErrInvalid, s.ID, s.Address)
		}
		n.log.Info("replacing old membership", "id", s.ID, "raft_addr", s.Address)
		if err := n.raft.RemoveServer(s.ID, 0, membershipTimeout).Error(); err != nil {
			return membershipErr("remove old "+string(s.ID), err)
		}
	}
	add, role := n.raft.AddVoter, RoleVoter
	if !m.Voter {
		add, role = n.raft.AddNonvoter, RoleNonvoter
	}
	if err := add(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, membershipTimeout).Error(); err != nil {
		return membershipErr("add "+m.ID, err)
	}
	n.log.Info("added "+role, "id", m.ID, "raft_addr", m.RaftAddr, "http_addr", m.HTTPAddr)
	data, err := fsm.Encode(fsm.NodeMetaCmd{NodeID: m.ID, HTTPAddr: m.HTTPAddr})
	if err != nil {
		return err
	}
	_, err = n.applyLeader(data)
	return err
}

func membershipErr(what string, err error) error {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
		return fmt.Errorf("%s: %w: %v", what, ErrNotLeader, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// RemoveMember removes a server from the configuration and forgets its
// address. On a follower it is forwarded to the leader.
func (n *Node) RemoveMember(ctx context.Context, id string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	return n.onLeader(ctx, "remove member "+id,
		func() error { return n.removeLocal(id) },
		func(addr string) error {
			err := n.cfg.Peer.RemoveMember(ctx, addr, id)
			if errors.Is(err, ErrUnknownID) && !errors.Is(err, ErrNotMember) {
				// The leader's 404 comes back bare; it is about a member.
				return fmt.Errorf("remove member %s: %w", id, ErrNotMember)
			}
			return err
		})
}

func (n *Node) removeLocal(id string) error {
	found := false
	for _, m := range n.members() {
		found = found || m.ID == id
	}
	if !found {
		return fmt.Errorf("remove member %s: %w", id, ErrNotMember)
	}
	if id == n.cfg.ID {
		return fmt.Errorf("%w: %s is the leader; stop it or transfer leadership first", ErrInvalid, id)
	}
	if err := n.removalRefusal(id); err != nil {
		return err
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, membershipTimeout).Error(); err != nil {
		return membershipErr("remove "+id, err)
	}
	n.log.Info("removed server", "id", id)
	data, err := fsm.Encode(fsm.NodeForgetCmd{NodeID: id})
	if err != nil {
		return err
	}
	_, err = n.applyLeader(data)
	return err
}

// leaderHTTPAddr is where to forward what only the leader can do.
func (n *Node) leaderHTTPAddr() (string, error) {
	_, leader := n.raft.LeaderWithID()
	if leader == "" {
		return "", ErrNoLeader
	}
	addr, ok := n.fsm.NodeHTTPAddr(string(leader))
	if !ok {
		return "", fmt.Errorf("%w: leader %s has not announced its address yet", ErrNoLeader, leader)
	}
	return addr, nil
}

func (n *Node) members() []Member {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	var out []Member
	for _, s := range f.Configuration().Servers {
		addr, _ := n.fsm.NodeHTTPAddr(string(s.ID))
		out = append(out, Member{ID: string(s.ID), RaftAddr: string(s.Address), HTTPAddr: addr, Voter: s.Suffrage == raft.Voter})
	}
	return out
}

// Cluster returns the leader's id and every member with its state. Each
// member's state is its own answer, asked over its HTTP API with a short
// timeout; a member that does not answer is "unknown". Unheard is the
// leader's record (its own, or from its answer).
func (n *Node) Cluster(ctx context.Context) (string, []Member) {
	_, leader := n.raft.LeaderWithID()
	members := n.members()
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	unheard := n.localUnheard()
	for i := range members {
		m := &members[i]
		if m.ID == n.cfg.ID {
			m.State = stateName(n.raft.State())
			continue
		}
		if m.HTTPAddr == "" {
			m.State = "unknown"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := n.cfg.Peer.Status(ctx, m.HTTPAddr)
			if err != nil {
				m.State = "unknown"
				return
			}
			m.State = st.State
			if m.ID == string(leader) {
				mu.Lock()
				unheard = st.Unheard
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i := range members {
		members[i].Unheard = unheard[members[i].ID]
	}
	return string(leader), members
}
