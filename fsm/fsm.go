package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
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

// Change describes one applied change. Observers receive it synchronously
// from Apply or Restore, in log order.
type Change struct {
	Kind     ChangeKind
	Instance Instance
	Replaced *Instance
	Reason   string
	// Index is the Raft index at which the change took effect.
	Index uint64
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

// FSM is the replicated service table. Apply is called by raft from one
// goroutine; every read method is safe to call concurrently with it.
type FSM struct {
	observe func(Change)

	// applied is the index of the last command applied. Raft's own
	// AppliedIndex runs ahead of the FSM (it moves when entries are handed
	// to the FSM goroutine), so readers that must see a write wait on this.
	applied atomic.Uint64

	mu         sync.RWMutex
	byID       map[string]*Instance
	byType     map[string]*typeSet
	typeIndex  map[string]uint64 // last index that changed each type; kept after a type empties
	lastChange uint64
	nodes      map[string]string // node id -> HTTP address
	requests   requestLog
}

// MaxRememberedRequests is how many request ids the table remembers; a
// resend older than that many idempotent commands is applied again.
const MaxRememberedRequests = 10000

// requestLog remembers the last request ids applied, oldest first, with the
// index of the command that carried each. It is part of the replicated
// state (and of snapshots), so every node deduplicates alike.
type requestLog struct {
	index map[string]uint64
	order []string
}

func (r *requestLog) seen(id string) (uint64, bool) {
	idx, ok := r.index[id]
	return idx, ok
}

func (r *requestLog) add(id string, index uint64) {
	if r.index == nil {
		r.index = map[string]uint64{}
	}
	r.index[id] = index
	r.order = append(r.order, id)
	if len(r.order) > MaxRememberedRequests {
		delete(r.index, r.order[0])
		r.order = r.order[1:]
	}
}

// New returns an empty table. observe, if not nil, is called for every
// change to the set of services, on the applying goroutine; it must be fast
// and must not call back into Apply.
func New(observe func(Change)) *FSM {
	if observe == nil {
		observe = func(Change) {}
	}
	return &FSM{
		observe:   observe,
		byID:      map[string]*Instance{},
		byType:    map[string]*typeSet{},
		typeIndex: map[string]uint64{},
		nodes:     map[string]string{},
	}
}

// Apply applies one committed log entry. It returns a *Result.
func (f *FSM) Apply(l *raft.Log) interface{} {
	cmd, err := Decode(l.Data)
	if err != nil {
		f.applied.Store(l.Index)
		return &Result{Index: l.Index, Err: err}
	}
	if b, ok := cmd.(BatchCmd); ok {
		return f.applyBatch(l.Index, b)
	}
	return f.ApplyCommand(l.Index, cmd)
}

func (f *FSM) applyBatch(index uint64, b BatchCmd) *BatchResult {
	out := &BatchResult{Results: make([]*Result, len(b.Commands))}
	for i, raw := range b.Commands {
		cmd, err := Decode(raw)
		if err == nil {
			if _, nested := cmd.(BatchCmd); nested {
				err = fmt.Errorf("%w: nested batch", ErrBadCommand)
			}
		}
		if err != nil {
			out.Results[i] = &Result{Index: index, Err: err}
			continue
		}
		out.Results[i] = f.applyCommand(index, cmd)
	}
	f.applied.Store(index)
	return out
}

// ApplyCommand applies a decoded command at the given index. Apply uses it;
// it is exported for tests and benchmarks that skip the log.
func (f *FSM) ApplyCommand(index uint64, cmd Command) *Result {
	res := f.applyCommand(index, cmd)
	f.applied.Store(index)
	return res
}

// applyCommand applies cmd without publishing index as applied: a batch
// publishes its index once every command in it is applied.
func (f *FSM) applyCommand(index uint64, cmd Command) *Result {
	var changes []Change
	res := &Result{Index: index}

	f.mu.Lock()
	if rid := requestID(cmd); rid != "" {
		if first, dup := f.requests.seen(rid); dup {
			f.mu.Unlock()
			return &Result{Index: first}
		}
	}
	switch c := cmd.(type) {
	case RegisterCmd:
		inst := &Instance{ID: c.ID, Type: c.Type, Address: c.Address, Port: c.Port, Meta: c.Meta, Index: index, TTLMillis: c.TTLMillis, encoded: &encodedCache{}}
		old := f.byID[c.ID]
		if old != nil {
			f.unlinkLocked(old, index)
		}
		f.linkLocked(inst, index)
		ch := Change{Kind: Added, Instance: *inst, Index: index}
		if old != nil {
			o := *old
			ch.Replaced = &o
		}
		changes = append(changes, ch)
	case DeregisterCmd:
		old := f.byID[c.ID]
		if old == nil {
			res.Err = fmt.Errorf("deregister %q: %w", c.ID, ErrUnknownInstance)
			break
		}
		f.unlinkLocked(old, index)
		changes = append(changes, Change{Kind: Removed, Instance: *old, Reason: ReasonDeregistered, Index: index})
	case RemoveCmd:
		old := f.byID[c.ID]
		switch {
		case old == nil:
			res.Err = fmt.Errorf("remove %q: %w", c.ID, ErrUnknownInstance)
		case old.Index != c.RegIndex:
			res.Err = fmt.Errorf("remove %q verified at index %d, now at %d: %w", c.ID, c.RegIndex, old.Index, ErrSuperseded)
		default:
			f.unlinkLocked(old, index)
			reason := c.Reason
			if reason == "" {
				reason = ReasonReportedDown
			}
			changes = append(changes, Change{Kind: Removed, Instance: *old, Reason: reason, Index: index})
		}
	case NodeMetaCmd:
		f.nodes[c.NodeID] = c.HTTPAddr
	case NodeForgetCmd:
		delete(f.nodes, c.NodeID)
	case LeaseStateCmd:
		old := f.byID[c.ID]
		switch {
		case old == nil:
			res.Err = fmt.Errorf("lease state %q: %w", c.ID, ErrUnknownInstance)
		case old.Index != c.RegIndex:
			res.Err = fmt.Errorf("lease state %q for index %d, now at %d: %w", c.ID, c.RegIndex, old.Index, ErrSuperseded)
		case c.Stale == (old.Health == HealthStaleLease):
			// Already so: nothing changes.
		default:
			next := *old
			next.encoded = &encodedCache{}
			if c.Stale {
				next.Health = HealthStaleLease
			} else {
				next.Health = ""
				next.Flaps++
			}
			f.replaceLocked(old, &next, index)
			changes = append(changes, Change{Kind: HealthChanged, Instance: next, Index: index})
		}
	default:
		res.Err = fmt.Errorf("%w: unhandled %T", ErrBadCommand, cmd)
	}
	if rid := requestID(cmd); rid != "" && res.Err == nil {
		f.requests.add(rid, index)
	}
	f.mu.Unlock()

	for _, ch := range changes {
		f.observe(ch)
	}
	return res
}

func requestID(cmd Command) string {
	switch c := cmd.(type) {
	case DeregisterCmd:
		return c.RequestID
	case RemoveCmd:
		return c.RequestID
	}
	return ""
}

// typeSet holds one type's instances. Writes change the map (under the
// FSM's lock) and drop the sorted view; the first read after a change
// builds it again, once. A burst of registrations into one large type thus
// costs O(1) each, not a copy of the whole type each.
type typeSet struct {
	members map[string]*Instance
	view    atomic.Pointer[typeView] // nil after a change; never mutated once stored
}

// typeView is a type's instances sorted by id, and the healthy ones among
// them: lookups prefer those, and must not scan the type to find them.
type typeView struct {
	all     []*Instance
	healthy []*Instance // the healthy ones, or all when none or all are
}

// sortedView returns the type's view, building it if a change dropped it.
// Callers hold the FSM's lock, shared or not: members does not change
// meanwhile.
func (t *typeSet) sortedView() *typeView {
	if v := t.view.Load(); v != nil {
		return v
	}
	v := &typeView{all: make([]*Instance, 0, len(t.members))}
	for _, inst := range t.members {
		v.all = append(v.all, inst)
	}
	sort.Slice(v.all, func(i, j int) bool { return v.all[i].ID < v.all[j].ID })
	var healthy []*Instance
	for _, inst := range v.all {
		if inst.Health == "" {
			healthy = append(healthy, inst)
		}
	}
	v.healthy = v.all
	if len(healthy) > 0 && len(healthy) < len(v.all) {
		v.healthy = healthy
	}
	t.view.Store(v)
	return v
}

func (t *typeSet) sorted() []*Instance { return t.sortedView().all }

// replaceLocked swaps an instance for a new version of itself (same id and
// type).
func (f *FSM) replaceLocked(old, next *Instance, index uint64) {
	f.byID[next.ID] = next
	ts := f.byType[next.Type]
	ts.members[next.ID] = next
	ts.view.Store(nil)
	f.touchLocked(next.Type, index)
}

// linkLocked inserts inst.
func (f *FSM) linkLocked(inst *Instance, index uint64) {
	f.byID[inst.ID] = inst
	ts := f.byType[inst.Type]
	if ts == nil {
		ts = &typeSet{members: map[string]*Instance{}}
		f.byType[inst.Type] = ts
	}
	ts.members[inst.ID] = inst
	ts.view.Store(nil)
	f.touchLocked(inst.Type, index)
}

func (f *FSM) unlinkLocked(inst *Instance, index uint64) {
	delete(f.byID, inst.ID)
	if ts := f.byType[inst.Type]; ts != nil {
		delete(ts.members, inst.ID)
		ts.view.Store(nil)
		if len(ts.members) == 0 {
			delete(f.byType, inst.Type)
		}
	}
	f.touchLocked(inst.Type, index)
}

func (f *FSM) touchLocked(typ string, index uint64) {
	f.typeIndex[typ] = index
	f.lastChange = index
}

// Get returns the instance with the given id.
func (f *FSM) Get(id string) (Instance, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	inst, ok := f.byID[id]
	if !ok {
		return Instance{}, false
	}
	return *inst, true
}

// InstancesOf returns the type's instances sorted by id, and the index of
// the last change to that type. The slice is shared: do not modify it.
func (f *FSM) InstancesOf(typ string) ([]*Instance, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	ts := f.byType[typ]
	if ts == nil {
		return nil, f.typeIndex[typ]
	}
	return ts.sorted(), f.typeIndex[typ]
}

// HealthyOf is InstancesOf restricted to instances whose lease is not
// stale, unless none is healthy (then all of them). The slice is shared:
// do not modify it.
func (f *FSM) HealthyOf(typ string) []*Instance {
	f.mu.RLock()
	defer f.mu.RUnlock()
	ts := f.byType[typ]
	if ts == nil {
		return nil
	}
	return ts.sortedView().healthy
}

// CountByType returns how many instances each type has, without copying
// the table.
func (f *FSM) CountByType() map[string]int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[string]int, len(f.byType))
	for typ, ts := range f.byType {
		out[typ] = len(ts.members)
	}
	return out
}

// All returns every instance sorted by type then id, and the index of the
// last change to the table.
func (f *FSM) All() ([]Instance, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	types := make([]string, 0, len(f.byType))
	for t := range f.byType {
		types = append(types, t)
	}
	sort.Strings(types)
	out := make([]Instance, 0, len(f.byID))
	for _, t := range types {
		for _, inst := range f.byType[t].sorted() {
			out = append(out, *inst)
		}
	}
	return out, f.lastChange
}

// Applied returns the index of the last command applied (or restored from a
// snapshot). Every write a client was answered for is a command, so once
// Applied reaches its index, reads on this node reflect it.
func (f *FSM) Applied() uint64 { return f.applied.Load() }

// Len returns the number of instances.
func (f *FSM) Len() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.byID)
}

// LastChange returns the index of the last change to the set of services.
func (f *FSM) LastChange() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.lastChange
}

// NodeHTTPAddr returns the HTTP address a binder announced.
func (f *FSM) NodeHTTPAddr(nodeID string) (string, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	a, ok := f.nodes[nodeID]
	return a, ok
}

// TableHash is a hex SHA-256 of the service table (every instance with its
// registration index, in id order). Two nodes that applied the same log
// have the same hash.
func (f *FSM) TableHash() string {
	f.mu.RLock()
	ids := make([]string, 0, len(f.byID))
	for id := range f.byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	h := sha256.New()
	var num [8]byte
	writeStr := func(s string) {
		binary.BigEndian.PutUint64(num[:], uint64(len(s)))
		h.Write(num[:])
		h.Write([]byte(s))
	}
	for _, id := range ids {
		inst := f.byID[id]
		writeStr(inst.ID)
		writeStr(inst.Type)
		writeStr(inst.Address)
		binary.BigEndian.PutUint64(num[:], uint64(inst.Port))
		h.Write(num[:])
		binary.BigEndian.PutUint64(num[:], inst.Index)
		h.Write(num[:])
		binary.BigEndian.PutUint64(num[:], uint64(inst.TTLMillis))
		h.Write(num[:])
		writeStr(inst.Health)
		binary.BigEndian.PutUint64(num[:], uint64(inst.Flaps))
		h.Write(num[:])
		keys := make([]string, 0, len(inst.Meta))
		for k := range inst.Meta {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		binary.BigEndian.PutUint64(num[:], uint64(len(keys)))
		h.Write(num[:])
		for _, k := range keys {
			writeStr(k)
			writeStr(inst.Meta[k])
		}
	}
	f.mu.RUnlock()
	return hex.EncodeToString(h.Sum(nil))
}

// SnapshotVersion is the format version written by Snapshot.
const SnapshotVersion = 1

// ErrSnapshotVersion is returned by Restore for a snapshot written in a
// format this build does not know.
var ErrSnapshotVersion = errors.New("unsupported snapshot version")

type snapshotData struct {
	Version    int               `json:"version"`
	Applied    uint64            `json:"applied"`
	LastChange uint64            `json:"last_change"`
	TypeIndex  map[string]uint64 `json:"type_index"`
	Nodes      map[string]string `json:"nodes"`
	Services   []Instance        `json:"services"`
	// Requests are the remembered request ids, oldest first.
	Requests []rememberedRequest `json:"requests,omitempty"`
}

type rememberedRequest struct {
	ID    string `json:"id"`
	Index uint64 `json:"index"`
}

// Snapshot captures the table. It is cheap: instances are immutable, so it
// copies pointers; encoding happens in Persist, concurrently with Apply.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := &snapshot{
		applied:    f.applied.Load(),
		lastChange: f.lastChange,
		typeIndex:  make(map[string]uint64, len(f.typeIndex)),
		nodes:      make(map[string]string, len(f.nodes)),
		services:   make([]*Instance, 0, len(f.byID)),
	}
	for k, v := range f.typeIndex {
		s.typeIndex[k] = v
	}
	for k, v := range f.nodes {
		s.nodes[k] = v
	}
	for _, inst := range f.byID {
		s.services = append(s.services, inst)
	}
	for _, id := range f.requests.order {
		s.requests = append(s.requests, rememberedRequest{ID: id, Index: f.requests.index[id]})
	}
	return s, nil
}

type snapshot struct {
	applied    uint64
	lastChange uint64
	typeIndex  map[string]uint64
	nodes      map[string]string
	services   []*Instance
	requests   []rememberedRequest
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	data := snapshotData{
		Version:    SnapshotVersion,
		Applied:    s.applied,
		LastChange: s.lastChange,
		TypeIndex:  s.typeIndex,
		Nodes:      s.nodes,
		Services:   make([]Instance, len(s.services)),
		Requests:   s.requests,
	}
	for i, inst := range s.services {
		data.Services[i] = *inst
	}
	sort.Slice(data.Services, func(i, j int) bool { return data.Services[i].ID < data.Services[j].ID })
	if err := json.NewEncoder(sink).Encode(&data); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {}

// Restore replaces the table with a snapshot. On any error the table is
// left exactly as it was. Observers see the difference between the old and
// the new table as Added/Removed changes, so a node that catches up through
// a snapshot reports the services it learned.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var data snapshotData
	dec := json.NewDecoder(rc)
	if err := dec.Decode(&data); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	if data.Version != SnapshotVersion {
		return fmt.Errorf("restore snapshot: %w: %d", ErrSnapshotVersion, data.Version)
	}
	byID := make(map[string]*Instance, len(data.Services))
	byType := map[string]*typeSet{}
	for i := range data.Services {
		inst := &data.Services[i]
		inst.encoded = &encodedCache{}
		if inst.ID == "" || inst.Type == "" {
			return fmt.Errorf("restore snapshot: service %d has no id or type", i)
		}
		if _, dup := byID[inst.ID]; dup {
			return fmt.Errorf("restore snapshot: duplicate id %q", inst.ID)
		}
		byID[inst.ID] = inst
		ts := byType[inst.Type]
		if ts == nil {
			ts = &typeSet{members: map[string]*Instance{}}
			byType[inst.Type] = ts
		}
		ts.members[inst.ID] = inst
	}
	if data.TypeIndex == nil {
		data.TypeIndex = map[string]uint64{}
	}
	if data.Nodes == nil {
		data.Nodes = map[string]string{}
	}

	var requests requestLog
	for _, r := range data.Requests {
		requests.add(r.ID, r.Index)
	}

	f.mu.Lock()
	oldByID := f.byID
	f.requests = requests
	f.byID, f.byType, f.typeIndex, f.lastChange, f.nodes = byID, byType, data.TypeIndex, data.LastChange, data.Nodes
	f.mu.Unlock()
	f.applied.Store(data.Applied)

	var changes []Change
	for id, old := range oldByID {
		if n, ok := byID[id]; !ok || n.Index != old.Index {
			changes = append(changes, Change{Kind: Removed, Instance: *old, Reason: "snapshot-restore", Index: data.LastChange})
		}
	}
	for id, n := range byID {
		if old, ok := oldByID[id]; !ok || old.Index != n.Index {
			changes = append(changes, Change{Kind: Added, Instance: *n, Index: n.Index})
		}
	}
	sort.Slice(changes, func(i, j int) bool {
		if changes[i].Kind != changes[j].Kind {
			return changes[i].Kind > changes[j].Kind // removals first
		}
		return changes[i].Instance.ID < changes[j].Instance.ID
	})
	for _, ch := range changes {
		f.observe(ch)
	}
	return nil
}
