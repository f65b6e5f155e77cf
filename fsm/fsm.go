package fsm

import (
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

var _ raft.FSM = (*FSM)(nil)

// Instance is one registered application server as the table holds it.
// Instances handed out by the FSM are shared and must not be modified.
type Instance struct {
	ID      string            `json:"id"`
	Type    string            `json:"type"`
	Address string            `json:"address"`
	Port    int               `json:"port"`
	Meta    map[string]string `json:"meta,omitempty"`
	// Index is the Raft index of the registration that created this
	// version of the instance. A removal names it to prove what it verified.
	Index uint64 `json:"index"`
	// TTLMillis is the lease of a registration that heartbeats; 0: none.
	TTLMillis int64 `json:"ttl_ms,omitempty"`
	// Health is "" (healthy) or HealthStaleLease.
	Health string `json:"health,omitempty"`
	// Flaps counts the times the lease went stale and recovered.
	Flaps int `json:"flaps,omitempty"`
	// Tags, Weights and Checks come from Consul-shaped registrations (log
	// format 3); lieur's own registrations have none.
	Tags    []string `json:"tags,omitempty"`
	Weights *Weights `json:"weights,omitempty"`
	Checks  []Check  `json:"checks,omitempty"`

	// encoded memoises this version's wire form for the API layer. Copies
	// of an Instance share it; a new version gets a new one.
	encoded *encodedCache
}

type encodedCache struct{ b atomic.Pointer[[]byte] }

// Encoded returns enc()'s bytes for this version of the instance,
// computing them once: lookups answer with bytes prepared once per change.
// enc must depend only on the instance.
func (i Instance) Encoded(enc func() []byte) []byte {
	if i.encoded == nil {
		return enc()
	}
	if b := i.encoded.b.Load(); b != nil {
		return *b
	}
	b := enc()
	i.encoded.b.Store(&b)
	return b
}

// HealthStaleLease marks an instance whose lease expired but which still
// answered a probe.
const HealthStaleLease = "stale-lease"

// ChangeKind says what happened to an instance.
type ChangeKind int

const (
	// Added: a new id entered the table, or an existing id was registered
	// again (Replaced is then set).
	Added ChangeKind = iota + 1
	// Removed: the id left the table; Reason says why.
	Removed
	// HealthChanged: a lease went stale or recovered.
	HealthChanged
)

// Change describes one applied change. Observers receive the changes of a
// log entry together, once the whole entry is applied (see Observer).
type Change struct {
	Kind     ChangeKind
	Instance Instance
	Replaced *Instance
	Reason   string
	// Index is the Raft index at which the change took effect.
	Index uint64
	// FromSnapshot: the change is part of the difference a Restore made
	// (a restart or a catch-up), not of a log entry's.
	FromSnapshot bool
}

// Result is what Apply returns through raft.ApplyFuture.Response() for a
// single command.
type Result struct {
	Index uint64
	Err   error
}

// BatchResult is what Apply returns for a BatchCmd: one Result per
// command, in order.
type BatchResult struct {
	Results []*Result
}

// Observer receives what one log entry changed, once the table holds the
// whole entry and Applied reports its index: a reader woken by it never
// sees half a batch. Restore delivers the difference between the old and
// the new table the same way, at the snapshot's index, once the table
// holds the whole snapshot, in parts of at most 4 096 changes. It runs
// on the applying goroutine, must be fast, and must not call back into
// Apply.
type Observer func(index uint64, changes []Change)

// FSM is the replicated service table. Apply is called by raft from one
// goroutine; every read method is safe to call concurrently with it.
type FSM struct {
	observe Observer

	// applied is the index of the last command applied. Raft's own
	// AppliedIndex runs ahead of the FSM (it moves when entries are handed
	// to the FSM goroutine), so readers that must see a write wait on this.
	applied atomic.Uint64

	mu     sync.RWMutex
	byID   map[string]*Instance
	byType map[string]*typeSet
	// typeIndex is the last index that changed each type that has
	// instances; vanished the last index at which some type lost its last
	// instance, the index of every type the table does not hold. So the
	// table's size follows what it holds, not every name ever written,
	// and a watcher of a type that empties still sees its index move.
	typeIndex  map[string]uint64
	vanished   uint64
	lastChange uint64
	nodes      map[string]string // node id -> HTTP address
	formats    map[string]int    // node id -> the log format it announced, when above 1
	checks     map[string]string // check id -> the instance id that has it
	requests   requestLog
	clusterID  string
}

// MaxRememberedRequests is how many request ids the table remembers; a
// resend older than that many idempotent commands is applied again.
const MaxRememberedRequests = 10000

// requestLog remembers the last request ids applied, oldest first, with the
// index of the command that carried each and the instance id it named. It
// is part of the replicated state (and of snapshots), so every node
// deduplicates alike.
type requestLog struct {
	index map[string]remembered
	order []string
}

type remembered struct {
	index  uint64
	target string // "" in snapshots of older builds: matches any id
}

// seen returns what the table remembers of request id rid.
func (r *requestLog) seen(rid string) (remembered, bool) {
	m, ok := r.index[rid]
	return m, ok
}

func (r *requestLog) add(rid string, m remembered) {
	if r.index == nil {
		r.index = map[string]remembered{}
	}
	r.index[rid] = m
	r.order = append(r.order, rid)
	if len(r.order) > MaxRememberedRequests {
		delete(r.index, r.order[0])
		r.order = r.order[1:]
	}
}

// New returns an empty table. observe, if not nil, is called once for each
// log entry that changed the set of services (see Observer).
func New(observe Observer) *FSM {
	if observe == nil {
		observe = func(uint64, []Change) {}
	}
	return &FSM{
		observe:   observe,
		byID:      map[string]*Instance{},
		byType:    map[string]*typeSet{},
		typeIndex: map[string]uint64{},
		nodes:     map[string]string{},
		formats:   map[string]int{},
		checks:    map[string]string{},
	}
}
