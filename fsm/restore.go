package fsm

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/hashicorp/raft"
)

// An operator's restore of a backup goes through the log as one command,
// restore/v1, carrying the whole table: every node applies the same entry
// at the same index, so every node ends with the same table, and a node
// that catches up later gets it like any other write (by replaying the
// entry, or from a snapshot taken after it). raft's own Restore was not
// used: it installs the state on the leader before any follower has it,
// and raft's documentation keeps it for disaster recovery into a fresh
// cluster.
//
// What the command replaces, and what it keeps:
//
//   - the instances and the remembered request ids become the backup's;
//   - the binders' addresses and log formats, and the cluster id, stay the
//     live cluster's: they describe the cluster the table is restored
//     into, and followers forward and authenticate with them;
//   - every restored instance is registered anew at the command's index
//     (its Index is that index), and so are the request ids. The index of
//     a registration is what removals, lease states and check statuses
//     name to prove what they verified: an index from the backup could
//     name, in this cluster, another registration of the same id (a
//     backup of another cluster, or of this one before the id was
//     registered again), and could lie ahead of this cluster's log when
//     the backup comes from an older, longer-lived cluster. Restored at
//     the command's index, no verification begun before the restore can
//     remove a restored instance, and no index goes backwards;
//   - every type the table holds gets the command's index, and so does the
//     table: blocking queries and watches wake, and every reader sees the
//     index move forward.

// TagRestore is the tag of RestoreCmd (log format 4).
const TagRestore = "restore/v1"

// ReasonRestored is the reason of a removal by a restore: the instance
// was not in the backup.
const ReasonRestored = "restored"

// MaxTableBytes bounds a backup's table as JSON (the payload of a backup
// file, and a restore command's table once decompressed).
const MaxTableBytes = 64 << 20

// MaxRestoreTableBytes bounds a restore command's compressed table, and so
// its log entry. A table of MaxTableBytes compresses to a fraction of it;
// the bound is there so that no entry of that size reaches raft.
const MaxRestoreTableBytes = 16 << 20

// RestoreCmd replaces the table's instances and request ids by a backup's
// (see above). Only the leader writes it, as its own log entry.
type RestoreCmd struct {
	// Table is the backup's table in the snapshot format (as BackupTable
	// writes it), gzip-compressed: JSON of instances compresses several
	// times over, and the entry is replicated to every node.
	Table []byte `json:"table"`
}

func (RestoreCmd) Tag() string { return TagRestore }

func validateRestore(c RestoreCmd) error {
	switch {
	case len(c.Table) == 0:
		return errors.New("table is empty")
	case len(c.Table) > MaxRestoreTableBytes:
		return fmt.Errorf("table of %d compressed bytes exceeds %d", len(c.Table), MaxRestoreTableBytes)
	}
	return nil
}

// memorySink is a raft.SnapshotSink into memory, to persist a table
// without a snapshot store.
type memorySink struct{ bytes.Buffer }

func (*memorySink) ID() string    { return "memory" }
func (*memorySink) Cancel() error { return nil }
func (*memorySink) Close() error  { return nil }

var _ raft.SnapshotSink = (*memorySink)(nil)

// BackupTable returns f's table in the snapshot format, as a backup file
// carries it, and the index of the last command it reflects. It leaves out
// what belongs to the cluster rather than to the table (the binders'
// addresses and formats, and the cluster id, which binders use as a
// credential): a restore keeps the live cluster's.
func (f *FSM) BackupTable() ([]byte, uint64) {
	snap, _ := f.Snapshot() // never fails
	s := snap.(*snapshot)
	s.nodes, s.formats, s.clusterID = map[string]string{}, map[string]int{}, ""
	var out memorySink
	_ = s.Persist(&out) // memory does not fail, nor does encoding the table
	return out.Bytes(), s.applied
}

// LoadBackup decodes a backup's table (BackupTable's bytes) into a table
// of its own, checking every rule Restore checks. It errs for a table
// written in a newer format with ErrSnapshotVersion.
func LoadBackup(r io.Reader) (*FSM, error) {
	t := New(nil)
	if err := t.Restore(io.NopCloser(io.LimitReader(r, MaxTableBytes+1))); err != nil {
		return nil, err
	}
	return t, nil
}

// RestoreCommand returns the restore/v1 command that gives a table f's
// instances and request ids.
func (f *FSM) RestoreCommand() (RestoreCmd, error) {
	table, _ := f.BackupTable()
	if len(table) > MaxTableBytes {
		return RestoreCmd{}, fmt.Errorf("%w: %s: the table's %d bytes exceed %d", ErrBadCommand, TagRestore, len(table), MaxTableBytes)
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed) // a valid level
	_, _ = zw.Write(table)                             // into memory
	_ = zw.Close()
	c := RestoreCmd{Table: buf.Bytes()}
	if err := Validate(c); err != nil {
		return RestoreCmd{}, err
	}
	return c, nil
}

// decodeRestoreTable decompresses and checks a restore command's table.
// It is deterministic: every node refuses the same bytes alike.
func decodeRestoreTable(b []byte) (*FSM, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("table: %v", err)
	}
	// Read whole, and bounded, before decoding: a table that does not
	// end where gzip says it does is refused, however its JSON starts.
	raw, err := io.ReadAll(io.LimitReader(zr, MaxTableBytes+1))
	if err != nil {
		return nil, fmt.Errorf("table: %v", err)
	}
	if len(raw) > MaxTableBytes {
		return nil, fmt.Errorf("table exceeds %d bytes", MaxTableBytes)
	}
	return LoadBackup(bytes.NewReader(raw))
}

// applyRestore applies a validated restore/v1 at index. The table is
// decoded before the lock is taken: readers are held only for the swap.
func (f *FSM) applyRestore(index uint64, c RestoreCmd) *Result {
	backup, err := decodeRestoreTable(c.Table)
	if err != nil {
		f.applied.Store(index)
		return &Result{Index: index, Err: fmt.Errorf("%w: %s: %v", ErrBadCommand, TagRestore, err)}
	}
	// backup is this function's own: its instances can be re-indexed in
	// place, and its maps taken over.
	byType := make(map[string]*typeSet, len(backup.byType))
	typeIndex := make(map[string]uint64, len(backup.byType))
	byID := make(map[string]*Instance, len(backup.byID))
	for id, inst := range backup.byID {
		next := *inst
		next.Index = index
		next.encoded = &encodedCache{}
		byID[id] = &next
		ts := byType[next.Type]
		if ts == nil {
			ts = &typeSet{members: map[string]*Instance{}}
			byType[next.Type] = ts
			typeIndex[next.Type] = index
		}
		ts.members[id] = &next
	}
	var requests requestLog
	for _, rid := range backup.requests.order {
		requests.add(rid, remembered{index: index, target: backup.requests.index[rid].target})
	}

	f.mu.Lock()
	old := f.byID
	for typ := range f.byType {
		if byType[typ] == nil {
			// A type the backup does not hold vanishes here, as when
			// its last instance leaves.
			f.vanished = index
		}
	}
	if len(old) > 0 || len(byID) > 0 {
		f.lastChange = index
	}
	f.byID, f.byType, f.typeIndex, f.checks, f.requests = byID, byType, typeIndex, backup.checks, requests
	f.mu.Unlock()

	changes := make([]Change, 0, len(old)+len(byID))
	for id, o := range old {
		if _, kept := byID[id]; !kept {
			changes = append(changes, Change{Kind: Removed, Instance: *o, Reason: ReasonRestored, Index: index})
		}
	}
	for id, n := range byID {
		ch := Change{Kind: Added, Instance: *n, Index: index}
		if o, ok := old[id]; ok {
			replaced := *o
			ch.Replaced = &replaced
		}
		changes = append(changes, ch)
	}
	// The order of Restore's changes: removals first, then by id, the
	// same on every node.
	sort.Slice(changes, func(i, j int) bool {
		if changes[i].Kind != changes[j].Kind {
			return changes[i].Kind > changes[j].Kind
		}
		return changes[i].Instance.ID < changes[j].Instance.ID
	})
	f.publish(index, changes)
	return &Result{Index: index}
}
