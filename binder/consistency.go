package binder

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/lieur/lieur/fsm"
)

// Read modes, strongest first:
//
//   - consistent (ConsistentRead): linearizable. The leader confirms it
//     still leads (a barrier of its term committed by a majority, only once
//     its first Barrier of the term has applied everything earlier leaders
//     committed; see ReadIndex); a follower asks the leader for a read
//     index and waits until its own table reflects it.
//   - default (ReadAllowed): served from local memory by a node that has
//     caught up since it started and has heard from a leader within
//     MaxStaleness, whether or not it knows one right now (elections do
//     not stop lookups). May lag the leader by the replication delay, and
//     by at most MaxStaleness when cut off.
//   - stale: served from local memory, always.

// ErrCatchingUp is returned for default reads on a node that has not yet
// applied what the leader had committed when it first heard from it after
// starting (hashicorp/raft does not persist the commit index, so a
// restarted node would otherwise serve its snapshot-era table).
var ErrCatchingUp = errors.New("catching up")

// ErrStale is returned for default reads on a node that has not heard from
// a leader for longer than MaxStaleness (for instance, cut off in a
// minority).
var ErrStale = errors.New("no recent contact with a leader")

// leadership tracks whether this node leads and has applied its first
// barrier of the term. gen changes at every transition so a slow barrier of
// an earlier term cannot mark a later one ready.
type leadership struct {
	mu    sync.Mutex
	gen   uint64
	ready bool
}

// transition starts a new leadership generation, not ready.
func (l *leadership) transition() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gen++
	l.ready = false
	return l.gen
}

// markReady marks generation gen ready, unless a transition came since.
func (l *leadership) markReady(gen uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gen != gen {
		return false
	}
	l.ready = true
	return true
}

func (l *leadership) current(gen uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.gen == gen
}

func (l *leadership) isReady() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ready
}

func (n *Node) watchLeadership() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case leading := <-n.raft.LeaderCh():
			gen := n.lead.transition()
			// Leading, or having led until now, is contact with a leader.
			n.noteLeaderContact()
			if !leading {
				n.leases.deactivate()
				n.checks.deactivate()
				continue
			}
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				// The barrier applies every entry committed by earlier
				// leaders before this one serves consistent reads.
				for n.ctx.Err() == nil && n.lead.current(gen) {
					if err := n.raft.Barrier(10 * time.Second).Error(); err == nil {
						// Observing first, then reading the table: a write
						// applied in between is seen one way or the other.
						n.checks.start()
						n.leases.start()
						all, _ := n.fsm.All()
						n.leases.merge(all, time.Now())
						n.checks.merge(all, time.Now())
						if n.lead.markReady(gen) {
							n.log.Info("leader ready: barrier applied; every lease starts afresh", "applied", n.fsm.Applied())
							n.wg.Add(1)
							go func() {
								defer n.wg.Done()
								n.ensureClusterID(gen)
							}()
						} else {
							n.leases.deactivate()
							n.checks.deactivate()
						}
						return
					} else if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) {
						return
					}
				}
			}()
		}
	}
}

// ReadIndex is the leader's side of a read-index request: the index of the
// last command applied here, taken once leadership is confirmed by a
// barrier of this leader's term (see confirmRounds). Any write
// acknowledged before the call has an index at most this one.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	return n.readIndex(ctx, true)
}

// readIndex is ReadIndex; with strict false, leadership is confirmed by
// VerifyLeader alone, which writes nothing to the log but can be fooled
// by a leader that was frozen (see confirmRounds). admit uses it: a write
// refused by a deposed leader's table is refused wrongly at worst, and
// the client may retry, while a barrier for every refused write would let
// bad requests grow the log.
func (n *Node) readIndex(ctx context.Context, strict bool) (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	for !n.lead.isReady() {
		if n.raft.State() != raft.Leader {
			return 0, ErrNotLeader
		}
		if !sleepCtx(ctx, 2*time.Millisecond) {
			return 0, fmt.Errorf("%w: leader not ready: %v", ErrNoLeader, ctx.Err())
		}
	}
	if !strict {
		idx := n.fsm.Applied()
		if err := n.raft.VerifyLeader().Error(); err != nil {
			return 0, fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return idx, nil
	}
	if err := n.confirm.confirm(ctx, n.confirmLeadership); err != nil {
		return 0, err
	}
	return n.fsm.Applied(), nil
}

// confirmLeadership proves that this node still leads, with everything
// committed before the call applied here.
//
// VerifyLeader alone is not proof: hashicorp/raft counts any answer to an
// append or heartbeat the leader sent earlier as a vote for a
// verification registered later. A leader frozen (SIGSTOP, a long GC or
// VM pause) with such answers in its socket buffers reads them on waking
// and "verifies" its leadership although a newer leader has meanwhile
// acknowledged writes it does not hold. A barrier is an entry of this
// leader's term: it commits only if a majority still accepts the term,
// which no majority does once a newer leader was elected, and once it
// applied, every write acknowledged before it is in the table.
// VerifyLeader first fails fast in the common case of a leader that knows
// it was deposed.
func (n *Node) confirmLeadership() error {
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	if err := n.raft.Barrier(n.cfg.WriteHold).Error(); err != nil {
		return fmt.Errorf("%w: confirming leadership: %v", ErrNotLeader, err)
	}
	return nil
}

// confirmRounds coalesces leadership confirmations, so that consistent
// reads cost one barrier per round, not one log entry each: a caller joins
// the next round that has not started yet (a round that started before
// the caller arrived cannot vouch for writes acknowledged after it
// started), and one round runs at a time.
type confirmRounds struct {
	mu      sync.Mutex
	running bool
	next    *confirmRound
}

type confirmRound struct {
	done chan struct{}
	err  error
}

// confirm waits for the outcome of the next round of run, or for ctx.
func (c *confirmRounds) confirm(ctx context.Context, run func() error) error {
	c.mu.Lock()
	if c.next == nil {
		c.next = &confirmRound{done: make(chan struct{})}
	}
	r := c.next
	if !c.running {
		c.running = true
		go c.loop(run)
	}
	c.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return fmt.Errorf("%w: confirming leadership: %v", ErrNoLeader, ctx.Err())
	}
}

// loop runs rounds while callers wait for one, then ends.
func (c *confirmRounds) loop(run func() error) {
	for {
		c.mu.Lock()
		r := c.next
		if r == nil {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.next = nil
		c.mu.Unlock()
		r.err = run()
		close(r.done)
	}
}

// ConsistentRead returns once this node's table reflects every write
// acknowledged before the call: reads that follow are linearizable. Without
// a reachable leader it retries up to the write hold timeout, then fails
// with ErrNoLeader.
func (n *Node) ConsistentRead(ctx context.Context) error {
	return n.consistentRead(ctx, true)
}

// consistentRead is ConsistentRead; strict false is as for readIndex, on
// a leader (a follower asks the leader, which always confirms with a
// barrier).
func (n *Node) consistentRead(ctx context.Context, strict bool) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.WriteHold)
	defer cancel()
	for attempt := 1; ; attempt++ {
		var err error
		if n.raft.State() == raft.Leader {
			_, err = n.readIndex(ctx, strict)
		} else if addr, lerr := n.leaderHTTPAddr(); lerr != nil {
			err = lerr
		} else {
			var idx uint64
			if idx, err = n.cfg.Peer.ReadIndex(ctx, addr); err == nil && !n.WaitApplied(ctx, idx) {
				err = fmt.Errorf("%w: index %d not applied here in time", ErrNoLeader, idx)
			}
		}
		if err == nil {
			return nil
		}
		if !(errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader) || errors.Is(err, ErrOutcomeUnknown)) {
			return err
		}
		if !sleepCtx(ctx, backoff(attempt)) {
			// Whatever the last attempt met, what the caller learns is
			// that no leader confirmed the read in time.
			if errors.Is(err, ErrNoLeader) {
				return fmt.Errorf("consistent read: %w", err)
			}
			return fmt.Errorf("consistent read: %w: %v", ErrNoLeader, err)
		}
	}
}

// ReadAllowed says whether this node may serve a default (non-stale)
// read: it has caught up since it started, and it has heard from a leader
// within MaxStaleness. Whether raft knows a leader right now does not
// matter: during an election every follower has forgotten the old leader
// for a few hundred milliseconds, and refusing reads then would make every
// binder refuse lookups at once, though none of them is more than an
// election behind.
func (n *Node) ReadAllowed() error {
	if !n.caughtUp.Load() {
		return ErrCatchingUp
	}
	since := n.LastContact()
	switch {
	case since < 0:
		return fmt.Errorf("%w: never heard from a leader", ErrStale)
	case since > n.cfg.MaxStaleness:
		return fmt.Errorf("%w for %s (max staleness %s)", ErrStale, since.Round(time.Millisecond), n.cfg.MaxStaleness)
	}
	return nil
}

// LastContact is how long ago this node last heard from a leader: zero on
// the leader itself, -1 when it never has. It counts raft's contacts
// (appends, heartbeats, snapshots from a leader), leaders observed elected,
// and this node's own leadership, whichever came last.
func (n *Node) LastContact() time.Duration {
	if n.raft.State() == raft.Leader {
		return 0
	}
	last := n.raft.LastContact()
	if ns := n.leaderContact.Load(); ns != 0 {
		if t := time.Unix(0, ns); t.After(last) {
			last = t
		}
	}
	if last.IsZero() {
		return -1
	}
	return time.Since(last)
}

// noteLeaderContact records that a leader is known alive now.
func (n *Node) noteLeaderContact() { n.leaderContact.Store(time.Now().UnixNano()) }

// CaughtUp reports whether the node has caught up since it started.
func (n *Node) CaughtUp() bool { return n.caughtUp.Load() }

// catchUp marks the node caught up once it has applied what the leader had
// when they first spoke.
func (n *Node) catchUp(ctx context.Context) {
	for attempt := 1; ctx.Err() == nil; attempt++ {
		if err := n.ConsistentRead(ctx); err == nil {
			n.caughtUp.Store(true)
			n.log.Info("caught up with the leader", "applied", n.fsm.Applied())
			return
		}
		sleepCtx(ctx, backoff(attempt))
	}
}

// ensureClusterID commits a random cluster id when the table has none yet:
// the first leader of a new cluster (or of one made by an older build)
// draws it, once every member has announced a build that knows the command
// (log format 2). Two leaders racing both commit; the table keeps the
// first.
func (n *Node) ensureClusterID(gen uint64) {
	for attempt := 1; n.ctx.Err() == nil && n.lead.current(gen) && n.fsm.ClusterID() == ""; attempt++ {
		if n.clusterFormat() < 2 {
			// Members announce their format as they start; look again.
			if !sleepCtx(n.ctx, 100*time.Millisecond) {
				return
			}
			attempt = 0
			continue
		}
		var b [16]byte
		_, _ = rand.Read(b[:])
		data, err := fsm.Encode(fsm.ClusterIDCmd{ClusterID: hex.EncodeToString(b[:])})
		if err != nil {
			n.log.Error("encode cluster id", "error", err)
			return
		}
		if _, err := n.applyLeader(data); err == nil {
			n.log.Info("cluster id committed")
			return
		} else if !sleepCtx(n.ctx, backoff(attempt)) {
			return
		}
	}
}
