package binder

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Dead-server cleanup, the part of Consul's autopilot lieur has: with
// Config.CleanupDeadAfter, the leader removes a server it has not heard
// from over Raft for that long.
//
// How the leader knows. hashicorp/raft v1.8.0 keeps, per follower, the time
// of the leader's last successful contact (followerReplication.LastContact)
// but does not export it: r.Stats() and r.LastContact() are this node's own
// view as a follower. That time is what counts for commitment and quorum,
// so the tracker below takes it from the two places raft lets it out:
//
//   - The leader's lease check: every LeaderLeaseTimeout or sooner, raft
//     logs "failed to contact" with server-id and time (now minus that last
//     contact) for each voter it has not heard from within the lease (Warn,
//     then Debug). The raft logger is wrapped (raftLogTap) to read these
//     calls, whatever the log level. It is reliable: the lease check runs in
//     the leader's loop whatever the follower's connections do.
//   - Observations: a FailedHeartbeatObservation{PeerID, LastContact} when
//     a heartbeat fails, and a ResumedHeartbeatObservation once one
//     succeeds again. They cover nonvoters too, but are spotty: while a
//     follower refuses connections, raftnet's patient dial keeps the next
//     heartbeat waiting up to 30 s, and raft drops observations rather than
//     block.
//
// Polling every member's /v1/status over HTTP instead would measure the HTTP
// port, which can be up while Raft is cut off or down while Raft works
// (removing a healthy voter), at a request per member per tick.
//
// A lease-check record holds while the reports go on; a heartbeat record
// until the heartbeats resume. One that no report or failure refreshes any
// more (its "resumed" observation lost, or a late "failed" one from a term
// that ended) is checked: the leader asks the server over HTTP whether it
// follows this leader and heard from it lately, and forgets it if so. The
// cleanup asks the same before it removes anything, so a lost observation
// never removes a live server.

// MinCleanupDeadAfter is the shortest Config.CleanupDeadAfter accepted: a
// server that restarts takes about a second to answer again, and a cleanup
// faster than that would race its own restarts.
const MinCleanupDeadAfter = time.Second

// minVoters is the fewest voters the cleanup leaves, and the fewest a
// demotion may leave once there are that many: below three, one failure
// stops the cluster, and running that way is the operator's decision
// (remove does it), not a timer's.
const minVoters = 3

// recheckEvery is how often the leader asks a server it has a record of,
// that nothing refreshes any more, whether it is in fact alive.
const recheckEvery = 2 * time.Second

// contactFailure is what the leader knows of a follower it does not hear
// from.
type contactFailure struct {
	lastContact time.Time // the leader's last successful contact, as raft reports it
	reported    time.Time // the latest lease-check report, zero if none
	failedAt    time.Time // the latest failed heartbeat, zero once resumed or if none
	checked     time.Time // when the leader last asked the server over HTTP
}

// deadServers is the leader's record of followers it does not hear from,
// for one leadership generation at a time.
type deadServers struct {
	mu      sync.Mutex
	gen     uint64    // the leadership generation the records belong to
	since   time.Time // when this node was first seen leading in gen
	failing map[string]contactFailure
	kept    map[string]string // id -> why cleanup last logged that it kept it
	// reportFresh: a lease-check record holds this long after its latest
	// report (the check runs at least every LeaderLeaseTimeout).
	reportFresh time.Duration
	// quiet: a record nothing refreshed for this long is rechecked; raft
	// retries a failed heartbeat after at most HeartbeatTimeout/2.
	quiet   time.Duration
	removed prometheus.Counter
}

func newDeadServers(heartbeat, lease time.Duration) *deadServers {
	return &deadServers{
		failing:     map[string]contactFailure{},
		kept:        map[string]string{},
		reportFresh: 4 * lease,
		quiet:       2 * heartbeat,
		removed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lieur_dead_servers_removed_total",
			Help: "Servers the leader removed because it had not heard from them for --cleanup-dead-after.",
		}),
	}
}

// syncLocked starts afresh when the leadership generation changed: records
// of an earlier term say nothing of this one, and a leader knows its
// followers only since it leads (raft starts each follower's contact clock
// at the start of the term).
func (d *deadServers) syncLocked(gen uint64, now time.Time) {
	if gen == d.gen && !d.since.IsZero() {
		return
	}
	d.gen, d.since = gen, now
	clear(d.failing)
	clear(d.kept)
}

// reported records the lease check's report that the leader of generation
// gen has not heard from voter id since lastContact.
func (d *deadServers) reported(gen uint64, id string, lastContact, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.syncLocked(gen, now)
	f := d.failing[id]
	f.lastContact, f.reported = lastContact, now
	d.failing[id] = f
}

// failed records a failed heartbeat to id, seen at now by the leader of
// generation gen.
func (d *deadServers) failed(gen uint64, id string, lastContact, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.syncLocked(gen, now)
	f := d.failing[id]
	f.lastContact, f.failedAt = lastContact, now
	d.failing[id] = f
}

// resumed forgets id: its heartbeats succeed again, it left the
// configuration, or it answered that it follows this leader.
func (d *deadServers) resumed(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.failing, id)
	delete(d.kept, id)
}

// currentLocked says whether a record still stands: its heartbeats failed
// and did not resume, or the lease check reported it lately.
func (d *deadServers) currentLocked(f contactFailure, now time.Time) bool {
	return !f.failedAt.IsZero() || (!f.reported.IsZero() && now.Sub(f.reported) <= d.reportFresh)
}

// unheard returns, for each follower the leader of generation gen does not
// hear from, for how long: since its last successful contact, or since
// this generation began if that is later.
func (d *deadServers) unheard(gen uint64, now time.Time) map[string]time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.syncLocked(gen, now)
	out := map[string]time.Duration{}
	for id, f := range d.failing {
		if !d.currentLocked(f, now) {
			continue
		}
		from := f.lastContact
		if from.Before(d.since) {
			from = d.since
		}
		out[id] = max(now.Sub(from), 0)
	}
	return out
}

// toRecheck returns the servers whose records nothing refreshed for quiet
// and that were not checked within recheckEvery, marks them checked, and
// drops the records that no longer stand.
func (d *deadServers) toRecheck(gen uint64, now time.Time) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.syncLocked(gen, now)
	var out []string
	for id, f := range d.failing {
		if !d.currentLocked(f, now) {
			delete(d.failing, id)
			continue
		}
		last := f.failedAt
		if f.reported.After(last) {
			last = f.reported
		}
		if now.Sub(last) >= d.quiet && now.Sub(f.checked) >= recheckEvery {
			f.checked = now
			d.failing[id] = f
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// keep records why the cleanup keeps id and reports whether that is news
// (so it is logged once, not at every pass).
func (d *deadServers) keep(id, why string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.kept[id] == why {
		return false
	}
	d.kept[id] = why
	return true
}

// raftLogTap is raft's logger, read for the lease check's reports of
// voters the leader has not heard from (see the top of this file). raft
// v1.8.0 logs them as "failed to contact" with "server-id" (a ServerID)
// and "time" (a Duration): Warn for the first few, then Debug. The calls
// are read before the level filters them, so the cleanup works at any
// --log-level.
type raftLogTap struct {
	hclog.Logger
	n *Node
}

func (l raftLogTap) Warn(msg string, args ...interface{}) {
	l.tap(msg, args)
	l.Logger.Warn(msg, args...)
}

func (l raftLogTap) Debug(msg string, args ...interface{}) {
	l.tap(msg, args)
	l.Logger.Debug(msg, args...)
}

// tap runs on raft's leader loop: a lock and a map write, nothing more.
// It reads no raft state (the loop may run before New has stored n.raft);
// only a leader runs the lease check.
func (l raftLogTap) tap(msg string, args []interface{}) {
	if msg != "failed to contact" {
		return
	}
	var id raft.ServerID
	var since time.Duration
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "server-id":
			id, _ = args[i+1].(raft.ServerID)
		case "time":
			since, _ = args[i+1].(time.Duration)
		}
	}
	if id == "" || since <= 0 {
		return
	}
	now := time.Now()
	l.n.dead.reported(l.n.lead.generation(), string(id), now.Add(-since), now)
}

// generation is the current leadership generation (see transition).
func (l *leadership) generation() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.gen
}

// localUnheard is this node's record of unheard followers while it leads,
// nil otherwise. Only members count: a heartbeat to a server being removed
// can still fail, and be observed, after it left the configuration.
func (n *Node) localUnheard() map[string]time.Duration {
	if n.raft.State() != raft.Leader {
		return nil
	}
	u := n.dead.unheard(n.lead.generation(), time.Now())
	if len(u) == 0 {
		return nil
	}
	servers, err := n.servers()
	if err != nil {
		return nil
	}
	for id := range u {
		if _, ok := find(servers, id); !ok {
			delete(u, id)
		}
	}
	if len(u) == 0 {
		return nil
	}
	return u
}

// cleanupTick is how often the leader looks for dead servers: often
// enough that one is removed soon after D, and no more than once a second.
func cleanupTick(d time.Duration) time.Duration {
	return min(max(d/5, 50*time.Millisecond), time.Second)
}

// runDeadServers follows the leader's heartbeat observations, rechecks the
// records no observation updates, and, with CleanupDeadAfter, removes dead
// servers. It always runs, cleanup or not: members and list-peers show how
// long the leader has not heard from each server.
func (n *Node) runDeadServers() {
	defer n.wg.Done()
	obs := make(chan raft.Observation, 64)
	o := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.PeerObservation:
			return true
		}
		return false
	})
	n.raft.RegisterObserver(o)
	defer n.raft.DeregisterObserver(o)
	every := time.Second
	if d := n.cfg.CleanupDeadAfter; d > 0 {
		every = cleanupTick(d)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case ob := <-obs:
			n.noteHeartbeat(ob)
		case <-t.C:
			if n.raft.State() != raft.Leader {
				continue
			}
			n.recheck(time.Now())
			if n.cfg.CleanupDeadAfter > 0 {
				n.cleanupDead(time.Now())
			}
		}
	}
}

// recheck asks the servers whose records no observation updates any more
// whether they follow this leader, and forgets those that do: their
// "resumed" observation was lost, or their record came late from a term
// that ended.
func (n *Node) recheck(now time.Time) {
	for _, id := range n.dead.toRecheck(n.lead.generation(), now) {
		if n.answersAsFollower(id) {
			n.dead.resumed(id)
			n.log.Info("server unheard over raft answers as a follower of this leader", "id", id)
		}
	}
}

func (n *Node) noteHeartbeat(o raft.Observation) {
	switch v := o.Data.(type) {
	case raft.FailedHeartbeatObservation:
		// Heartbeats only fail on a leader. One that arrives late, from a
		// term that ended, is dropped here, or recorded under the new term
		// and then cleared by a recheck.
		if n.raft.State() == raft.Leader {
			n.dead.failed(n.lead.generation(), string(v.PeerID), v.LastContact, time.Now())
		}
	case raft.ResumedHeartbeatObservation:
		n.dead.resumed(string(v.PeerID))
	case raft.PeerObservation:
		if v.Removed {
			n.dead.resumed(string(v.Peer.ID))
		}
	}
}

// cleanupDead removes at most one server the leader has not heard from for
// CleanupDeadAfter, when the rules allow it (cleanupRefusal), and after the
// server itself, asked over HTTP, did not say it follows this leader. One
// configuration change per pass: the next pass reads the new configuration.
func (n *Node) cleanupDead(now time.Time) {
	after := n.cfg.CleanupDeadAfter
	if n.raft.State() != raft.Leader || !n.lead.isReady() {
		return
	}
	unheard := n.dead.unheard(n.lead.generation(), now)
	if len(unheard) == 0 {
		return
	}
	servers, err := n.servers()
	if err != nil {
		return
	}
	var dead []raft.Server
	for _, s := range servers {
		if string(s.ID) != n.cfg.ID && unheard[string(s.ID)] >= after {
			dead = append(dead, s)
		}
	}
	// The longest unheard first, then by id, so passes are reproducible.
	sort.Slice(dead, func(i, j int) bool {
		a, b := unheard[string(dead[i].ID)], unheard[string(dead[j].ID)]
		if a != b {
			return a > b
		}
		return dead[i].ID < dead[j].ID
	})
	for _, s := range dead {
		id := string(s.ID)
		role := roleName(s.Suffrage)
		if err := cleanupRefusal(servers, id, unheard); err != nil {
			if n.dead.keep(id, err.Error()) {
				n.log.Info("dead server kept", "id", id, "role", role, "unheard", unheard[id].Round(time.Millisecond), "reason", err.Error())
			}
			continue
		}
		if n.answersAsFollower(id) {
			n.dead.resumed(id)
			n.log.Info("server unheard over raft answers as a follower of this leader", "id", id)
			continue
		}
		if err := n.removeLocal(id); err != nil {
			n.log.Warn("dead server removal failed", "id", id, "error", err)
			return
		}
		n.dead.resumed(id)
		n.dead.removed.Inc()
		n.log.Warn("removed dead server", "id", id, "role", role,
			"unheard", unheard[id].Round(time.Millisecond), "cleanup_dead_after", after)
		return
	}
}

// cleanupRefusal says why the cleanup may not remove server id: a voter
// goes only when at least minVoters voters are left and they include a
// quorum the leader hears from. A nonvoter counts toward no quorum and
// always may go.
func cleanupRefusal(servers []raft.Server, id string, unheard map[string]time.Duration) error {
	s, ok := find(servers, id)
	if !ok || s.Suffrage != raft.Voter {
		return nil
	}
	if left := countVoters(servers) - 1; left < minVoters {
		return fmt.Errorf("removing it would leave %d voters; the cleanup keeps at least %d", left, minVoters)
	}
	return quorumWithout(servers, id, unheard)
}

// answersAsFollower asks server id over HTTP whether it follows this
// leader and has heard from it within the quiet time (a live follower hears
// a heartbeat every tenth of the heartbeat timeout).
func (n *Node) answersAsFollower(id string) bool {
	addr, ok := n.fsm.NodeHTTPAddr(id)
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(n.ctx, time.Second)
	defer cancel()
	st, err := n.cfg.Peer.Status(ctx, addr)
	return err == nil && st.Leader == n.cfg.ID && st.LastContact >= 0 && st.LastContact < n.dead.quiet
}
