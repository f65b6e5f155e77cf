package binder

// What a node does with each applied change: logs it, wakes the watchers
// of the types it touched, and keeps leases, checks, round-robin cursors
// and recent removals in step with the table.

import (
	"sync"
	"time"

	"github.com/lieur/lieur/fsm"
)

// observe runs on raft's apply goroutine once per log entry that changed
// the table, after the whole entry is applied: waiters woken here read all
// of it.
func (n *Node) observe(index uint64, changes []fsm.Change) {
	now := time.Now()
	n.events.Append(index, now, changes)
	var types typeList
	unlogged := 0
	for _, c := range changes {
		inst := c.Instance
		switch c.Kind {
		case fsm.Added:
			if c.FromSnapshot && !n.restoreLog.logOne(index) {
				unlogged++
				break
			}
			addr := joinHostPort(inst.Address, inst.Port)
			if c.Replaced != nil {
				n.log.Info("new service", "id", inst.ID, "type", inst.Type, "addr", addr, "replaced", true)
				if c.Replaced.Type != inst.Type {
					types.add(c.Replaced.Type)
				}
			} else {
				n.log.Info("new service", "id", inst.ID, "type", inst.Type, "addr", addr)
			}
		case fsm.Removed:
			n.log.Info("removed service", "id", inst.ID, "reason", c.Reason)
			n.noteRemoved(inst.ID)
		case fsm.HealthChanged:
			health := inst.Health
			if health == "" {
				health = "passing"
			}
			n.log.Info("lease state", "id", inst.ID, "health", health, "flaps", inst.Flaps)
		}
		n.leases.observe(c, now)
		n.checks.observe(c, now)
		types.add(inst.Type)
	}
	if unlogged > 0 {
		n.log.Info("new services from snapshot", "count", unlogged, "index", index,
			"logged_each", restoreLoggedEach)
	}
	for _, typ := range types.list {
		// HasType, not a view: building a type's sorted view after every
		// entry would cost a sort per write to a large type.
		if !n.fsm.HasType(typ) {
			// The type is gone: its round-robin cursor goes too, so the
			// cursors follow the table, not every name ever registered.
			n.cursors.Delete(typ)
		}
		n.changes.notify(typ)
	}
}

// restoreLoggedEach is how many of a restored snapshot's new services a
// node logs one line each; the rest are counted, a line per part the FSM
// hands over (4 096 instances). A node catching up on a million instances
// spent a fifth of its restore writing a million lines.
const restoreLoggedEach = 1000

// restoreLog counts the lines logged for the snapshot restored at index.
// Restores happen on raft's FSM goroutine, or before it starts.
type restoreLog struct {
	mu     sync.Mutex
	index  uint64
	logged int
}

// logOne reports whether one more new service of the snapshot restored
// at index gets its own line.
func (r *restoreLog) logOne(index uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.index != index {
		r.index, r.logged = index, 0
	}
	if r.logged >= restoreLoggedEach {
		return false
	}
	r.logged++
	return true
}

// typeList collects the types an entry touched, once each, in order: by
// a scan while they are few (an entry of writes), through a set once they
// are many (a restored snapshot brings every instance of every type: a
// scan made a restore of 1 000 000 instances over 10 000 types quadratic).
type typeList struct {
	list []string
	seen map[string]struct{}
}

func (t *typeList) add(typ string) {
	if t.seen != nil {
		if _, ok := t.seen[typ]; !ok {
			t.seen[typ] = struct{}{}
			t.list = append(t.list, typ)
		}
		return
	}
	for _, v := range t.list {
		if v == typ {
			return
		}
	}
	t.list = append(t.list, typ)
	if len(t.list) > 16 {
		t.seen = make(map[string]struct{}, 64)
		for _, v := range t.list {
			t.seen[v] = struct{}{}
		}
	}
}

func (n *Node) noteRemoved(id string) {
	n.removedMu.Lock()
	defer n.removedMu.Unlock()
	now := time.Now()
	if len(n.removed) > 10000 {
		for k, t := range n.removed {
			if now.Sub(t) > recentRemovalWindow {
				delete(n.removed, k)
			}
		}
	}
	n.removed[id] = now
}

func (n *Node) removedRecently(id string) bool {
	n.removedMu.Lock()
	defer n.removedMu.Unlock()
	t, ok := n.removed[id]
	return ok && time.Since(t) < recentRemovalWindow
}
