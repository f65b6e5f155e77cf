package binder

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Lease ages: how long ago each lease was last renewed, for people
// watching (the UI's "last heartbeat: 3 s ago"). Heartbeats never go
// through the log, so only the leader knows their times, in memory: every
// answer is measured on the leader's clock when it answers, and a
// follower forwards the question to it rather than guess.
//
// A new leader knows no heartbeat from before its term: it starts every
// lease's clock when its first barrier has applied (lease.go). Until the
// owner's next heartbeat reaches it, an age counts from that start, and
// the answer says so (LeaseClockLeadership) instead of passing it off as
// a heartbeat's.

// What started a lease's clock, the last time it was started.
const (
	// LeaseClockHeartbeat: a heartbeat this leader received.
	LeaseClockHeartbeat = "heartbeat"
	// LeaseClockRegistration: the registration (or a restore), applied
	// while this node led; no heartbeat since.
	LeaseClockRegistration = "registration"
	// LeaseClockLeadership: this node became leader (its first barrier
	// applied) and has received no heartbeat for the lease since.
	LeaseClockLeadership = "leadership"
)

// LeaseAge is one lease as the leader sees it when it answers.
type LeaseAge struct {
	// Age is the time since the lease was last renewed, by what Clock
	// says.
	Age   time.Duration
	Clock string
	TTL   time.Duration
}

// LeaseReport is the leader's answer: who measured, and every lease (of a
// type, when asked for one) by instance id.
type LeaseReport struct {
	Leader string
	Leases map[string]LeaseAge
}

// LeasePeer is implemented by a Peer that can ask the leader for its
// lease ages (transport/httpapi's PeerClient does).
type LeasePeer interface {
	Leases(ctx context.Context, httpAddr, typ string) (LeaseReport, error)
}

// Leases returns the ages of the leases of instances of typ ("" for every
// type), measured by the leader: on a follower the question is forwarded
// to it. Without a leader ready to answer within the write hold it fails
// with ErrNoLeader.
func (n *Node) Leases(ctx context.Context, typ string) (LeaseReport, error) {
	if typ != "" {
		if err := ValidateType(typ); err != nil {
			return LeaseReport{}, err
		}
	}
	// onLeader bounds its retries by the write hold; the local side's
	// wait for a new leader's table needs the same bound.
	ctx, cancel := context.WithTimeout(ctx, n.cfg.WriteHold)
	defer cancel()
	var rep LeaseReport
	err := n.onLeader(ctx, "lease ages",
		func() error {
			var err error
			rep, err = n.leasesReady(ctx, typ)
			return err
		},
		func(addr string) error {
			lp, ok := n.cfg.Peer.(LeasePeer)
			if !ok {
				return fmt.Errorf("%w: this binder cannot ask the leader for lease ages", ErrInvalid)
			}
			var err error
			rep, err = lp.Leases(ctx, addr, typ)
			if errors.Is(err, ErrOutcomeUnknown) {
				// A read has no outcome to be unsure of: the leader's
				// answer was lost, which is worth asking again.
				err = fmt.Errorf("%w: %v", ErrNoLeader, err)
			}
			return err
		})
	return rep, err
}

// LeasesLocal answers on this node only, which must lead (ErrNotLeader
// otherwise): the side of Leases that a follower's forwarded question
// reaches. It waits, within ctx, for a new leader's lease table to be
// built.
func (n *Node) LeasesLocal(ctx context.Context, typ string) (LeaseReport, error) {
	if typ != "" {
		if err := ValidateType(typ); err != nil {
			return LeaseReport{}, err
		}
	}
	return n.leasesReady(ctx, typ)
}

func (n *Node) leasesReady(ctx context.Context, typ string) (LeaseReport, error) {
	for !n.lead.isReady() {
		if n.raft.State() != raft.Leader {
			return LeaseReport{}, ErrNotLeader
		}
		// Before the first barrier the lease table is not built: an
		// empty answer would say no instance has a lease.
		if !sleepCtx(ctx, 2*time.Millisecond) {
			return LeaseReport{}, fmt.Errorf("%w: leader not ready: %v", ErrNoLeader, ctx.Err())
		}
	}
	if n.raft.State() != raft.Leader {
		return LeaseReport{}, ErrNotLeader
	}
	ages, ok := n.leases.ages(typ, time.Now())
	if !ok {
		// Deposed between the check and the read.
		return LeaseReport{}, ErrNotLeader
	}
	return LeaseReport{Leader: n.cfg.ID, Leases: ages}, nil
}

// ages reads every lease's clock (of typ, or all for "") at now; ok is
// false when this node's table is not active (it does not lead).
func (l *leases) ages(typ string, now time.Time) (map[string]LeaseAge, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active {
		return nil, false
	}
	out := map[string]LeaseAge{}
	for id, le := range l.byID {
		if typ != "" && le.typ != typ {
			continue
		}
		out[id] = LeaseAge{Age: max(now.Sub(le.renewedAt), 0), Clock: le.clock, TTL: le.ttl}
	}
	return out, true
}
