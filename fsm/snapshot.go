package fsm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/hashicorp/raft"
)

// restoreChunk bounds the changes Restore hands the observer at once: the
// table is whole before the first part, and building a million changes
// (each holding a copy of its instance) at once held some 200 MB more
// until the observer was done with them.
const restoreChunk = 4096

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
	// Services are decoded each on its own: a slice of values would be
	// grown, copied and kept whole for as long as any one of them lives.
	Services []*Instance `json:"services"`
	// Requests are the remembered request ids, oldest first.
	Requests []rememberedRequest `json:"requests,omitempty"`
	// Vanished: see FSM.vanished. ClusterID: see ClusterIDCmd. Older
	// builds ignore both.
	Vanished    uint64         `json:"vanished,omitempty"`
	ClusterID   string         `json:"cluster_id,omitempty"`
	NodeFormats map[string]int `json:"node_formats,omitempty"`
}

type rememberedRequest struct {
	ID     string `json:"id"`
	Index  uint64 `json:"index"`
	Target string `json:"target,omitempty"`
}

// Snapshot captures the table. It is cheap: instances are immutable, so it
// copies pointers; encoding happens in Persist, concurrently with Apply.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := &snapshot{
		applied:    f.applied.Load(),
		lastChange: f.lastChange,
		vanished:   f.vanished,
		clusterID:  f.clusterID,
		formats:    make(map[string]int, len(f.formats)),
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
	for k, v := range f.formats {
		s.formats[k] = v
	}
	for _, inst := range f.byID {
		s.services = append(s.services, inst)
	}
	for _, id := range f.requests.order {
		m := f.requests.index[id]
		s.requests = append(s.requests, rememberedRequest{ID: id, Index: m.index, Target: m.target})
	}
	return s, nil
}

type snapshot struct {
	applied    uint64
	lastChange uint64
	vanished   uint64
	clusterID  string
	formats    map[string]int
	typeIndex  map[string]uint64
	nodes      map[string]string
	services   []*Instance
	requests   []rememberedRequest
}

// snapshotHead and snapshotTail are the fields of snapshotData before and
// after its services, in its order: Persist writes the same document as
// encoding a snapshotData would, with the services streamed between them.
type snapshotHead struct {
	Version    int               `json:"version"`
	Applied    uint64            `json:"applied"`
	LastChange uint64            `json:"last_change"`
	TypeIndex  map[string]uint64 `json:"type_index"`
	Nodes      map[string]string `json:"nodes"`
}

type snapshotTail struct {
	Requests    []rememberedRequest `json:"requests,omitempty"`
	Vanished    uint64              `json:"vanished,omitempty"`
	ClusterID   string              `json:"cluster_id,omitempty"`
	NodeFormats map[string]int      `json:"node_formats,omitempty"`
}

// Persist writes the snapshot as one JSON document (snapshotData), the
// services in id order. They are sorted as pointers and encoded one by
// one into a buffered writer: neither a copy of every instance nor the
// whole document is held in memory (at 1 000 000 instances those were
// some 180 MB and 80 MB more on every node at every snapshot).
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.persist(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) persist(out io.Writer) error {
	head, err := json.Marshal(snapshotHead{Version: SnapshotVersion, Applied: s.applied, LastChange: s.lastChange, TypeIndex: s.typeIndex, Nodes: s.nodes})
	if err != nil {
		return err
	}
	tail := snapshotTail{Requests: s.requests, Vanished: s.vanished, ClusterID: s.clusterID}
	if len(s.formats) > 0 {
		tail.NodeFormats = s.formats
	}
	rest, err := json.Marshal(tail)
	if err != nil {
		return err
	}
	slices.SortFunc(s.services, func(a, b *Instance) int { return strings.Compare(a.ID, b.ID) })

	w := bufio.NewWriterSize(out, 1<<20)
	w.Write(head[:len(head)-1]) // without its closing brace
	w.WriteString(`,"services":[`)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i, inst := range s.services {
		if i > 0 {
			w.WriteByte(',')
		}
		buf.Reset()
		if err := enc.Encode(inst); err != nil {
			return err
		}
		w.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	}
	w.WriteByte(']')
	if len(rest) > 2 { // not {}
		w.WriteByte(',')
		w.Write(rest[1:])
	} else {
		w.WriteByte('}')
	}
	w.WriteByte('\n')
	return w.Flush()
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
	checks := map[string]string{}
	byType := map[string]*typeSet{}
	for i, inst := range data.Services {
		if inst == nil {
			return fmt.Errorf("restore snapshot: service %d is null", i)
		}
		inst.encoded = &encodedCache{}
		if err := validateInstance(inst); err != nil {
			return fmt.Errorf("restore snapshot: service %d: %w", i, err)
		}
		normalize(inst)
		if _, dup := byID[inst.ID]; dup {
			return fmt.Errorf("restore snapshot: duplicate id %q", inst.ID)
		}
		for _, c := range inst.Checks {
			if owner, taken := checks[c.ID]; taken {
				return fmt.Errorf("restore snapshot: check id %q of %q and %q", c.ID, owner, inst.ID)
			}
			checks[c.ID] = inst.ID
		}
		byID[inst.ID] = inst
		ts := byType[inst.Type]
		if ts == nil {
			ts = &typeSet{members: map[string]*Instance{}}
			byType[inst.Type] = ts
		}
		ts.members[inst.ID] = inst
	}
	// Snapshots of older builds keep the index of every type ever seen;
	// fold those of empty types into vanished.
	typeIndex := make(map[string]uint64, len(byType))
	vanished := data.Vanished
	for typ, idx := range data.TypeIndex {
		if byType[typ] != nil {
			typeIndex[typ] = idx
		} else {
			vanished = max(vanished, idx)
		}
	}
	for typ := range byType {
		if _, ok := typeIndex[typ]; !ok {
			return fmt.Errorf("restore snapshot: type %q has no index", typ)
		}
	}
	if data.Nodes == nil {
		data.Nodes = map[string]string{}
	}
	// A node entry Apply would now refuse (an older build took any) is
	// dropped, the same on every node, rather than making the snapshot
	// unrestorable: that node announces itself again.
	formats := map[string]int{}
	for id, addr := range data.Nodes {
		if validateNode(id, addr) != nil {
			delete(data.Nodes, id)
			continue
		}
		if v := data.NodeFormats[id]; v > 1 && v <= 1000 {
			formats[id] = v
		}
	}
	if data.ClusterID != "" {
		if err := Validate(ClusterIDCmd{ClusterID: data.ClusterID}); err != nil {
			return fmt.Errorf("restore snapshot: %w", err)
		}
	}
	for _, r := range data.Requests {
		if r.ID == "" || ValidateRequestID(r.ID) != nil {
			return fmt.Errorf("restore snapshot: request id %q is not valid", truncate(r.ID))
		}
		if r.Target != "" && ValidateID(r.Target) != nil {
			return fmt.Errorf("restore snapshot: request id %q names an invalid id", r.ID)
		}
	}

	var requests requestLog
	for _, r := range data.Requests {
		requests.add(r.ID, remembered{index: r.Index, target: r.Target})
	}

	f.mu.Lock()
	oldByID := f.byID
	f.requests = requests
	f.byID, f.byType, f.typeIndex, f.lastChange, f.nodes = byID, byType, typeIndex, data.LastChange, data.Nodes
	f.vanished, f.clusterID, f.formats, f.checks = vanished, data.ClusterID, formats, checks
	f.mu.Unlock()

	// The changes, grouped by kind (health changes, then removals, then
	// additions) and in id order within each. The additions and health
	// changes follow the snapshot's order, which Persist writes sorted by
	// id (sorting a million pointers by id took a second); the removals
	// come from a map and are sorted.
	var healthChanged, removed, added []*Instance
	for id, old := range oldByID {
		if n, ok := byID[id]; !ok || n.Index != old.Index {
			removed = append(removed, old)
		}
	}
	for _, n := range data.Services {
		old, ok := oldByID[n.ID]
		switch {
		case !ok || old.Index != n.Index:
			added = append(added, n)
		case !sameHealth(old, n):
			// Same registration, another health (a lease went stale, a
			// check changed): its watchers must wake too.
			healthChanged = append(healthChanged, n)
		}
	}
	f.applied.Store(data.Applied)
	byIDOrder := func(a, b *Instance) int { return strings.Compare(a.ID, b.ID) }
	var changes []Change
	for _, group := range []struct {
		kind ChangeKind
		list []*Instance
	}{{HealthChanged, healthChanged}, {Removed, removed}, {Added, added}} {
		if !slices.IsSortedFunc(group.list, byIDOrder) {
			slices.SortFunc(group.list, byIDOrder)
		}
		for _, inst := range group.list {
			c := Change{Kind: group.kind, Instance: *inst, Index: data.LastChange, FromSnapshot: true}
			switch group.kind {
			case Removed:
				c.Reason = "snapshot-restore"
			case Added:
				c.Index = inst.Index
			}
			changes = append(changes, c)
			if len(changes) == restoreChunk {
				f.observe(data.Applied, changes)
				changes = nil
			}
		}
	}
	if len(changes) > 0 {
		f.observe(data.Applied, changes)
	}
	return nil
}

// sameHealth reports whether two versions of one registration have the
// same health: lease state, flaps, and every check's status and output.
func sameHealth(a, b *Instance) bool {
	if a.Health != b.Health || a.Flaps != b.Flaps || len(a.Checks) != len(b.Checks) {
		return false
	}
	for i := range a.Checks {
		if a.Checks[i].ID != b.Checks[i].ID || a.Checks[i].Status != b.Checks[i].Status || a.Checks[i].Output != b.Checks[i].Output {
			return false
		}
	}
	return true
}
