package binder

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// MemberStatusTimeout bounds how long ClusterStatus waits for each member's
// answer: a member that is down costs the caller this much, once, not one
// timeout per member (they are asked in parallel).
const MemberStatusTimeout = time.Second

var (
	// ErrNoHTTPAddr: the member has not announced its HTTP address (it
	// never started, or has not caught up far enough to announce it), so
	// nobody can ask it anything.
	ErrNoHTTPAddr = errors.New("has not announced its HTTP address")
	// ErrWrongMember: the member's HTTP address answered as another node
	// (an address reused after a move): its answer is not the member's.
	ErrWrongMember = errors.New("answered as another node")
)

// MemberStatus is one member with its own view of itself, or why it could
// not be had.
type MemberStatus struct {
	Member
	// Status is the member's own answer; meaningful only when Err is nil.
	Status Status
	// Err says why the member's status could not be had.
	Err error
}

// ClusterStatusReport is the cluster as one binder sees it.
type ClusterStatusReport struct {
	// Binder is this node's id; Leader the leader's as it knows it ("":
	// none).
	Binder, Leader string
	// Members are the servers of the configuration, ordered by id.
	Members []MemberStatus
}

// ClusterStatus returns every member of the configuration with its own
// status: this node's directly, the others' asked over their HTTP API
// through the node's Peer (so TLS and the cluster credential apply), in
// parallel, at most MemberStatusTimeout each. It is how a page that may
// talk only to the binder that served it shows the whole cluster.
func (n *Node) ClusterStatus(ctx context.Context) ClusterStatusReport {
	_, leader := n.raft.LeaderWithID()
	members := n.members()
	out := make([]MemberStatus, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		out[i].Member = m
		ms := &out[i]
		switch {
		case m.ID == n.cfg.ID:
			ms.Status = n.Status()
		case m.HTTPAddr == "":
			ms.Err = fmt.Errorf("member %s %w", m.ID, ErrNoHTTPAddr)
		default:
			wg.Add(1)
			go func() {
				defer wg.Done()
				mctx, cancel := context.WithTimeout(ctx, MemberStatusTimeout)
				defer cancel()
				st, err := n.cfg.Peer.Status(mctx, m.HTTPAddr)
				switch {
				case err != nil:
					ms.Err = err
				case st.ID != m.ID:
					ms.Err = fmt.Errorf("%s %w %q, not %q", m.HTTPAddr, ErrWrongMember, st.ID, m.ID)
				default:
					ms.Status = st
				}
			}()
		}
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return ClusterStatusReport{Binder: n.cfg.ID, Leader: string(leader), Members: out}
}
