package binder

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/lieur/lieur/fsm"
)

// Leases: a registration with a TTL stays while its owner heartbeats.
// Heartbeats never touch the Raft log: only the leader keeps deadlines, in
// memory (followers forward heartbeats to it). When a deadline passes the
// leader probes the instance like a verified report; one that still answers
// is kept and flagged stale-lease, one that does not is removed by a
// remove/v1 command naming its registration index, so every node removes
// the same instance at the same index and a newer registration of the same
// id is never removed. A new leader starts every lease afresh (one full TTL
// of grace) once its first barrier has applied, so a failover never expires
// a healthy server.
//
// The contract: never removed before its TTL passes without a heartbeat;
// may be removed a little later (the probe, the guard below).
//
// Guard against mass expiry: when at least 3 instances of a type, and more
// than half of that type, are due within one TTL, only half of them expire
// at once; the rest wait one more TTL and are probed again.

// Limits of a lease's TTL.
const (
	MinTTL = fsm.MinTTLMillis * time.Millisecond
	MaxTTL = fsm.MaxTTLMillis * time.Millisecond
)

// leaseTick is how often the leader looks for passed deadlines.
const leaseTick = 100 * time.Millisecond

// flapDamping: an instance that has flapped this many times recovers from
// stale-lease only after heartbeating steadily for a whole TTL.
const flapDamping = 2

type lease struct {
	typ          string
	regIndex     uint64
	ttl          time.Duration
	deadline     time.Time
	deferred     bool // held back once by the mass-expiry guard
	probing      bool
	probeStarted time.Time
	renewedAt    time.Time // last heartbeat
	healthySince time.Time // first heartbeat of the current steady run
	// clock says what last set renewedAt: a heartbeat, or, before this
	// leader has received one, the registration or this leader's start
	// of its lease clocks. GET /v1/leases shows it, so that an age is
	// never passed off as a heartbeat's when none was received.
	clock string
}

// leases is the leader's table of deadlines. It is empty on followers.
type leases struct {
	mu     sync.Mutex
	active bool
	byID   map[string]*lease
	guard  map[string]int // type -> instances held back by the guard
	// touched, between start and merge, holds the instances observe saw
	// change: merge must not bring back an older version of them.
	touched map[string]bool
}

func newLeases() *leases { return &leases{byID: map[string]*lease{}, guard: map[string]int{}} }

// activate starts every lease of the table afresh: one full TTL of grace.
func (l *leases) activate(insts []fsm.Instance, now time.Time) {
	l.start()
	l.merge(insts, now)
}

// start begins a leadership term's leases: from now on observe records
// every change. Call it before reading the table that merge takes, so
// that a registration applied in between is not lost.
func (l *leases) start() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.active = true
	l.byID = map[string]*lease{}
	l.guard = map[string]int{}
	l.touched = map[string]bool{}
}

// merge grants the leases of a table read after start a full TTL, except
// those observe has seen change since, and ends the window.
func (l *leases) merge(insts []fsm.Instance, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer func() { l.touched = nil }()
	for _, inst := range insts {
		if l.touched[inst.ID] {
			continue
		}
		if inst.TTLMillis > 0 {
			ttl := time.Duration(inst.TTLMillis) * time.Millisecond
			l.byID[inst.ID] = &lease{typ: inst.Type, regIndex: inst.Index, ttl: ttl, deadline: now.Add(ttl), renewedAt: now, healthySince: now,
				clock: LeaseClockLeadership}
		}
	}
}

func (l *leases) deactivate() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.active = false
	l.byID = map[string]*lease{}
	l.guard = map[string]int{}
}

// observe keeps the table in step with applied changes (on the leader).
func (l *leases) observe(c fsm.Change, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active {
		return
	}
	inst := c.Instance
	if l.touched != nil && (c.Kind == fsm.Added || c.Kind == fsm.Removed) {
		// A health change keeps the registration: merge's version of it
		// is as good as any.
		l.touched[inst.ID] = true
	}
	switch c.Kind {
	case fsm.Added:
		delete(l.byID, inst.ID)
		if inst.TTLMillis > 0 {
			ttl := time.Duration(inst.TTLMillis) * time.Millisecond
			l.byID[inst.ID] = &lease{typ: inst.Type, regIndex: inst.Index, ttl: ttl, deadline: now.Add(ttl), renewedAt: now, healthySince: now,
				clock: LeaseClockRegistration}
		}
	case fsm.Removed:
		delete(l.byID, inst.ID)
	}
}

// renew records a heartbeat. It reports whether the lease is known here.
func (l *leases) renew(id string, regIndex uint64, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	le, ok := l.byID[id]
	if !ok || le.regIndex != regIndex {
		return false
	}
	if now.Sub(le.renewedAt) > le.ttl {
		le.healthySince = now // the steady run starts again
	}
	le.renewedAt = now
	le.clock = LeaseClockHeartbeat
	le.deadline = now.Add(le.ttl)
	le.deferred = false
	return true
}

// steady reports whether the lease has heartbeat without a gap for a TTL.
func (l *leases) steady(id string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	le, ok := l.byID[id]
	return ok && now.Sub(le.healthySince) >= le.ttl
}

// expiry is one lease whose deadline passed, to be probed.
type expiry struct {
	id       string
	regIndex uint64
}

// due returns the leases to probe now, applying the mass-expiry guard.
// total counts each type's instances (leased or not).
func (l *leases) due(now time.Time, total map[string]int) (out []expiry, guarded map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active {
		return nil, nil
	}
	type group struct {
		cohort []*lease // soon to expire, not yet held back or probing
		atRisk int      // cohort plus those being probed
	}
	groups := map[string]*group{}
	ids := map[*lease]string{}
	for id, le := range l.byID {
		ids[le] = id
		g := groups[le.typ]
		if g == nil {
			g = &group{}
			groups[le.typ] = g
		}
		// A lease whose owner heartbeats (every TTL/3 with the Go client)
		// always has more than half a TTL left; less means beats are
		// being missed and it will expire within the TTL.
		switch {
		case le.probing:
			g.atRisk++
		case !le.deferred && le.deadline.Sub(now) < le.ttl/2:
			g.cohort = append(g.cohort, le)
			g.atRisk++
		}
	}
	for typ, g := range groups {
		if n := total[typ]; n >= 3 && 2*g.atRisk > n && len(g.cohort) > 1 {
			// Hold back the later half of the cohort one more TTL.
			sort.Slice(g.cohort, func(i, j int) bool {
				if !g.cohort[i].deadline.Equal(g.cohort[j].deadline) {
					return g.cohort[i].deadline.Before(g.cohort[j].deadline)
				}
				return ids[g.cohort[i]] < ids[g.cohort[j]]
			})
			for _, le := range g.cohort[len(g.cohort)-len(g.cohort)/2:] {
				le.deferred = true
				le.deadline = le.deadline.Add(le.ttl)
			}
		}
	}
	held := map[string]int{}
	for id, le := range l.byID {
		if le.deferred {
			held[le.typ]++
		}
		if le.probing || now.Before(le.deadline) {
			continue
		}
		le.probing = true
		le.probeStarted = now
		out = append(out, expiry{id: id, regIndex: le.regIndex})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	l.guard = held
	guarded = map[string]int{}
	for k, v := range held {
		guarded[k] = v
	}
	return out, guarded
}

// settle ends a probe: it reports whether the lease was renewed meanwhile
// (then nothing is removed) and, when the instance answered, gives it
// another TTL.
func (l *leases) settle(id string, alive bool, now time.Time) (renewed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	le, ok := l.byID[id]
	if !ok {
		return false
	}
	le.probing = false
	// Any heartbeat since the probe began renews the lease, even one whose
	// new deadline has passed again by now (a TTL shorter than the probe).
	if le.renewedAt.After(le.probeStarted) {
		return true
	}
	if alive {
		le.deadline = now.Add(le.ttl)
	}
	return false
}

func (l *leases) guarded() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for k, v := range l.guard {
		out[k] = v
	}
	return out
}

// runLeases expires leases while this node is a ready leader.
func (n *Node) runLeases() {
	defer n.wg.Done()
	t := time.NewTicker(leaseTick)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		if n.raft.State() != raft.Leader || !n.lead.isReady() {
			continue
		}
		total := n.fsm.CountByType()
		due, guarded := n.leases.due(time.Now(), total)
		for typ, held := range guarded {
			if n.noteGuard(typ, held) {
				n.log.Warn("mass-expiry guard: holding leases back one more TTL", "type", typ, "held", held, "instances", total[typ])
			}
		}
		n.guardMu.Lock()
		for typ := range n.guardLogged {
			if _, still := guarded[typ]; !still {
				delete(n.guardLogged, typ)
			}
		}
		n.guardMu.Unlock()
		for _, e := range due {
			n.wg.Add(1)
			go n.expire(e)
		}
	}
}

// noteGuard remembers the guard's last report per type, so it is logged
// once when it engages, not every tick.
func (n *Node) noteGuard(typ string, held int) bool {
	n.guardMu.Lock()
	defer n.guardMu.Unlock()
	if n.guardLogged[typ] == held {
		return false
	}
	n.guardLogged[typ] = held
	return true
}

// expire probes an instance whose lease passed and removes it if it does
// not answer and was not renewed meanwhile.
func (n *Node) expire(e expiry) {
	defer n.wg.Done()
	inst, ok := n.fsm.Get(e.id)
	if !ok || inst.Index != e.regIndex {
		n.leases.settle(e.id, false, time.Now())
		return
	}
	addr := joinHostPort(inst.Address, inst.Port)
	alive := false
	if !n.cfg.ExpireWithoutProbe {
		n.log.Info("lease expired, probing", "id", inst.ID, "addr", addr)
		ctx, cancel := context.WithTimeout(n.ctx, time.Duration(n.cfg.ProbeAttempts)*(n.cfg.ProbeTimeout+probePause))
		alive = probe(ctx, addr, n.cfg.ProbeTimeout, n.cfg.ProbeAttempts) == nil
		cancel()
	}
	if n.leases.settle(e.id, alive, time.Now()) {
		n.metrics.expiries.WithLabelValues("renewed").Inc()
		n.log.Info("lease renewed while its expiry was probing: kept", "id", inst.ID)
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.WriteHold)
	defer cancel()
	if alive {
		n.metrics.expiries.WithLabelValues("stale").Inc()
		if inst.Health != fsm.HealthStaleLease {
			n.log.Warn("lease expired but the instance answers: kept as stale-lease", "id", inst.ID, "addr", addr)
			n.applyLeaseState(ctx, inst, true)
		}
		return
	}
	n.metrics.expiries.WithLabelValues("removed").Inc()
	_, err := n.apply(ctx, fsm.RemoveCmd{ID: inst.ID, RegIndex: inst.Index, Reason: fsm.ReasonExpired}, true)
	if err != nil && !errors.Is(err, ErrUnknownID) && !errors.Is(err, ErrSuperseded) {
		n.log.Warn("lease expiry not committed", "id", inst.ID, "error", err)
	}
}

func (n *Node) applyLeaseState(ctx context.Context, inst fsm.Instance, stale bool) {
	_, err := n.apply(ctx, fsm.LeaseStateCmd{ID: inst.ID, RegIndex: inst.Index, Stale: stale}, true)
	if err != nil && !errors.Is(err, ErrUnknownID) && !errors.Is(err, ErrSuperseded) {
		n.log.Warn("lease state not committed", "id", inst.ID, "stale", stale, "error", err)
	}
}

// Heartbeat renews the lease of instance id. On a follower it is forwarded
// to the leader, which keeps the deadlines. ErrUnknownID tells the owner to
// register again. With a scope (nil for any type), the leader refuses an
// instance of another type with ErrForbidden.
func (n *Node) Heartbeat(ctx context.Context, id string, scope []string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	if err := invalid(fsm.ValidateScope(scope)); err != nil {
		return err
	}
	return n.onLeader(ctx, "heartbeat "+id,
		func() error { return n.heartbeatLocal(id, scope) },
		func(addr string) error { return n.cfg.Peer.Heartbeat(ctx, addr, id, scope) })
}

func (n *Node) heartbeatLocal(id string, scope []string) error {
	inst, ok := n.fsm.Get(id)
	if !ok {
		return fmt.Errorf("heartbeat %s: %w", id, ErrUnknownID)
	}
	if scope != nil && !slices.Contains(scope, inst.Type) {
		return fmt.Errorf("heartbeat %s: type %q: %w", id, inst.Type, ErrForbidden)
	}
	if inst.TTLMillis <= 0 {
		return fmt.Errorf("%w: %s was registered without a ttl", ErrInvalid, id)
	}
	now := time.Now()
	// Before the leader's first barrier the table of deadlines is not
	// built yet; activation grants every lease a full TTL anyway.
	if !n.leases.renew(id, inst.Index, now) {
		n.log.Debug("heartbeat before the lease table was built", "id", id)
	}
	if inst.Health == fsm.HealthStaleLease && (inst.Flaps < flapDamping || n.leases.steady(id, now)) {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			ctx, cancel := context.WithTimeout(n.ctx, n.cfg.WriteHold)
			defer cancel()
			n.log.Info("lease renewed: stale-lease cleared", "id", id, "flaps", inst.Flaps+1)
			n.applyLeaseState(ctx, inst, false)
		}()
	}
	return nil
}
