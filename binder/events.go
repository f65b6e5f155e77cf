package binder

import (
	"context"
	"sync"
	"time"

	"github.com/lieur/lieur/fsm"
)

// EventRingSize is how many events a binder keeps in memory for
// GET /v1/events: the newest ones, whatever their age. It bounds the
// memory of the history (a few hundred KiB), not its span in time.
const EventRingSize = 1024

// Event kinds, as GET /v1/events names them.
const (
	// EventRegistered: an id entered the table, or was registered again
	// (Reason is then EventReasonReplaced).
	EventRegistered = "registered"
	// EventRemoved: an id left the table; Reason is the fsm's reason
	// (fsm.ReasonDeregistered, ReasonReportedDown, ReasonExpired,
	// ReasonCriticalTooLong) or "snapshot-restore".
	EventRemoved = "removed"
	// EventHealth: a lease went stale or recovered, or a check changed.
	EventHealth = "health"
)

// Reasons of registered and health events (removals carry the fsm's).
const (
	// EventReasonReplaced: an id already in the table was registered again.
	EventReasonReplaced = "replaced"
	// EventReasonLeaseStale: the lease passed without a heartbeat but the
	// instance still answered a probe.
	EventReasonLeaseStale = "lease-stale"
	// EventReasonLeaseRenewed: a heartbeat cleared a stale lease.
	EventReasonLeaseRenewed = "lease-renewed"
	// EventReasonCheck: a check's status or output changed.
	EventReasonCheck = "check"
)

// Event is one change to the table as this binder applied it.
type Event struct {
	// Index is the Raft index of the log entry (or of the snapshot) that
	// carried the change; the changes of one entry share it.
	Index uint64
	// Time is this binder's clock when it applied the change: the log
	// carries no time, so the same change has another time on each
	// binder, and a binder replaying its log at start stamps old changes
	// with the time of the replay.
	Time    time.Time
	Kind    string
	ID      string
	Type    string
	Address string
	Port    int
	// Health is set on health events only: "stale-lease", or the
	// instance's status ("passing", "warning", "critical"), as the API's
	// instance fields name them.
	Health string
	Reason string
}

// EventLog is a bounded ring of the newest events, newest last inside,
// handed out newest first. Indexes never go down: the FSM's observer
// delivers entries in log order. Safe for concurrent use.
type EventLog struct {
	mu    sync.Mutex
	buf   []Event // ring storage, len == capacity
	start int     // position of the oldest event
	n     int     // events held
	// cut is the index of the last event pushed out of the ring: when it
	// equals the oldest held event's index, that entry is only partly held.
	cut uint64
	// wake is closed, and replaced, by every Append that adds an event.
	wake chan struct{}
}

// NewEventLog returns an empty ring that holds up to size events (at
// least 1).
func NewEventLog(size int) *EventLog {
	return &EventLog{buf: make([]Event, max(size, 1)), wake: make(chan struct{})}
}

// Append records what one log entry changed, at index, applied at time
// at. It is the FSM observer's side: cheap, never blocking.
func (l *EventLog) Append(index uint64, at time.Time, changes []fsm.Change) {
	if len(changes) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n > 0 && index < l.newestLocked() {
		// The observer never goes back in the log; if it ever did, the
		// held history would no longer lead up to this table, and clients
		// polling with ?index= would skip what follows. Start over.
		l.start, l.n, l.cut = 0, 0, 0
	}
	for _, c := range changes {
		l.pushLocked(eventOf(index, at, c))
	}
	close(l.wake)
	l.wake = make(chan struct{})
}

func (l *EventLog) pushLocked(e Event) {
	if l.n == len(l.buf) {
		l.cut = l.buf[l.start].Index
		l.buf[l.start] = e
		l.start = (l.start + 1) % len(l.buf)
		return
	}
	l.buf[(l.start+l.n)%len(l.buf)] = e
	l.n++
}

func (l *EventLog) at(i int) *Event { return &l.buf[(l.start+i)%len(l.buf)] }

func (l *EventLog) newestLocked() uint64 {
	if l.n == 0 {
		return 0
	}
	return l.at(l.n - 1).Index
}

// oldestLocked is the lowest index from which on the ring holds every
// event: one more than the newest index pushed out (events leave in index
// order, so every later one is held, and an entry only partly pushed out
// counts as gone), or the oldest event's index when none ever was. A
// client that saw everything up to index N missed some events exactly
// when N < oldest-1. Not the oldest held event's index: entries without
// events (barriers, membership) leave holes in the indexes, and a client
// whose last event sits just before such a hole has missed nothing.
func (l *EventLog) oldestLocked() uint64 {
	if l.n == 0 {
		return 0
	}
	if l.cut > 0 {
		return l.cut + 1
	}
	return l.at(0).Index
}

// Since returns the events with an index above after, newest first, at
// most limit of them (the newest; limit <= 0: no cap), with the index of
// the newest event held and the oldest complete index (see EventsResponse
// in transport/wire): both 0 while the ring is empty.
func (l *EventLog) Since(after uint64, limit int) (events []Event, newest, oldest uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	events = []Event{}
	for i := l.n - 1; i >= 0; i-- {
		e := l.at(i)
		if e.Index <= after || (limit > 0 && len(events) == limit) {
			break
		}
		events = append(events, *e)
	}
	return events, l.newestLocked(), l.oldestLocked()
}

// Wait blocks until the ring holds an event with an index above after, or
// ctx ends. It reports whether such an event is there.
func (l *EventLog) Wait(ctx context.Context, after uint64) bool {
	for {
		l.mu.Lock()
		newest, wake := l.newestLocked(), l.wake
		l.mu.Unlock()
		if newest > after {
			return true
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return false
		}
	}
}

// eventOf maps one fsm change onto an event.
func eventOf(index uint64, at time.Time, c fsm.Change) Event {
	inst := c.Instance
	e := Event{Index: index, Time: at, ID: inst.ID, Type: inst.Type, Address: inst.Address, Port: inst.Port}
	switch c.Kind {
	case fsm.Added:
		e.Kind = EventRegistered
		if c.Replaced != nil {
			e.Reason = EventReasonReplaced
		}
	case fsm.Removed:
		e.Kind, e.Reason = EventRemoved, c.Reason
	default:
		e.Kind, e.Health, e.Reason = EventHealth, healthOf(&inst), healthReason(&inst)
	}
	return e
}

// healthOf names an instance's health as the API shows it: its status,
// except that a stale lease that is not worse than a warning says so.
func healthOf(inst *fsm.Instance) string {
	st := inst.Status()
	if inst.Health == fsm.HealthStaleLease && st != fsm.StatusCritical {
		return fsm.HealthStaleLease
	}
	return st
}

// healthReason tells from the instance's new version what changed: the
// change does not carry the version before it. A stale lease is the only
// way to get the stale flag, and a checkless instance changes health only
// through its lease; otherwise a check moved. (An instance with both a
// lease and checks, which neither API registers, is attributed to its
// checks when it is not stale.)
func healthReason(inst *fsm.Instance) string {
	switch {
	case inst.Health == fsm.HealthStaleLease:
		return EventReasonLeaseStale
	case len(inst.Checks) == 0:
		return EventReasonLeaseRenewed
	default:
		return EventReasonCheck
	}
}

// Events returns this binder's recent history of the table (see
// EventLog.Since). It is this binder's own memory, served whatever its
// Raft state.
func (n *Node) Events(after uint64, limit int) ([]Event, uint64, uint64) {
	return n.events.Since(after, limit)
}

// WaitEvents blocks until this binder holds an event with an index above
// after, or ctx ends, or the node closes. It reports whether one is there.
func (n *Node) WaitEvents(ctx context.Context, after uint64) bool {
	n.metrics.waiters.Inc()
	defer n.metrics.waiters.Dec()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(n.ctx, cancel)
	defer stop()
	return n.events.Wait(ctx, after)
}
