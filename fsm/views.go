package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"sort"
	"sync/atomic"
)

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
	all []*Instance
	// healthy is what lookups choose from: the passing instances, else
	// the warning ones (a stale lease counts as warning), never the
	// critical ones.
	healthy []*Instance
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
	var passing, warning []*Instance
	for _, inst := range v.all {
		switch inst.Status() {
		case StatusPassing:
			passing = append(passing, inst)
		case StatusWarning:
			warning = append(warning, inst)
		}
	}
	switch {
	case len(passing) == len(v.all):
		v.healthy = v.all // the common case: no copy
	case len(passing) > 0:
		v.healthy = passing
	default:
		v.healthy = warning
	}
	t.view.Store(v)
	return v
}

func (t *typeSet) sorted() []*Instance { return t.sortedView().all }

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
		return nil, f.vanished
	}
	return ts.sorted(), f.typeIndex[typ]
}

// HealthyOf is what lookups choose from: the type's passing instances, or
// when none passes its warning ones (a stale lease is a warning); never a
// critical one. The slice is shared: do not modify it.
func (f *FSM) HealthyOf(typ string) []*Instance {
	f.mu.RLock()
	defer f.mu.RUnlock()
	ts := f.byType[typ]
	if ts == nil {
		return nil
	}
	return ts.sortedView().healthy
}

// HasType reports whether the table holds an instance of typ. Unlike
// InstancesOf it builds no sorted view.
func (f *FSM) HasType(typ string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.byType[typ] != nil
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

// NodeFormat returns the log format a binder announced (1 when it
// announced none, or is unknown).
func (f *FSM) NodeFormat(nodeID string) int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if v, ok := f.formats[nodeID]; ok {
		return v
	}
	return 1
}

// ClusterID returns the cluster's id, "" until the first leader committed
// one.
func (f *FSM) ClusterID() string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.clusterID
}

// RequestAppliedTo reports whether the table remembers a command that
// carried request id rid and named instance id.
func (f *FSM) RequestAppliedTo(rid, id string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, ok := f.requests.seen(rid)
	return ok && (m.target == "" || m.target == id)
}

// TypeCount returns how many types have instances; with Len, it bounds
// what the table holds.
func (f *FSM) TypeCount() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.typeIndex)
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
		if inst.Tags != nil || inst.Weights != nil || inst.Checks != nil {
			// Only when present, so that tables without them hash as
			// they did before checks existed (binders of both builds
			// compare hashes during an upgrade). encoding/json writes map
			// keys sorted: the bytes are deterministic.
			extra, _ := json.Marshal(struct {
				T []string
				W *Weights
				C []Check
			}{inst.Tags, inst.Weights, inst.Checks})
			writeStr(string(extra))
		}
	}
	f.mu.RUnlock()
	return hex.EncodeToString(h.Sum(nil))
}
