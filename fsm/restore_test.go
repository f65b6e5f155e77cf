package fsm

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// backupOf builds a table from cmds (applied at 1, 2, ...) and returns the
// restore command of its table.
func backupOf(t *testing.T, cmds ...Command) RestoreCmd {
	t.Helper()
	src := New(nil)
	for i, c := range cmds {
		require.NoError(t, src.ApplyCommand(uint64(i+1), c).Err)
	}
	c, err := src.RestoreCommand()
	require.NoError(t, err)
	return c
}

// liveTable is a cluster's table: binders, a cluster id, two types, a
// remembered request id.
func liveTable(t *testing.T, observe Observer) *FSM {
	t.Helper()
	f := New(observe)
	for i, c := range []Command{
		NodeMetaCmd{NodeID: "n1", HTTPAddr: "127.0.0.1:8001", Format: LogFormat},
		ClusterIDCmd{ClusterID: "live-cluster"},
		reg("a", "echo", 1),
		reg("b", "time", 2),
		reg("gone", "echo", 3),
		DeregisterCmd{ID: "gone", RequestID: "live-key"},
	} {
		require.NoError(t, apply(t, f, uint64(i+1), c).Err)
	}
	return f
}

func TestRestoreReplacesTheTableAtItsIndex(t *testing.T) {
	backup := backupOf(t,
		ClusterIDCmd{ClusterID: "backup-cluster"},
		NodeMetaCmd{NodeID: "old", HTTPAddr: "10.9.9.9:8001"},
		RegisterCmd{ID: "a", Type: "echo", Address: "10.0.0.1", Port: 7, Meta: map[string]string{"v": "1"}, TTLMillis: 10000},
		reg("c", "web", 3),
		reg("x", "web", 4),
		DeregisterCmd{ID: "x", RequestID: "backup-key"},
	)
	f := liveTable(t, nil)
	res := apply(t, f, 50, backup)
	require.NoError(t, res.Err)
	assert.Equal(t, uint64(50), res.Index)
	assert.Equal(t, uint64(50), f.Applied())

	all, last := f.All()
	assert.Equal(t, uint64(50), last)
	require.Len(t, all, 2)
	assert.Equal(t, "a", all[0].ID)
	assert.Equal(t, "10.0.0.1", all[0].Address, "the backup's version of a")
	assert.Equal(t, int64(10000), all[0].TTLMillis)
	assert.Equal(t, map[string]string{"v": "1"}, all[0].Meta)
	assert.Equal(t, "c", all[1].ID)
	for _, inst := range all {
		assert.Equal(t, uint64(50), inst.Index, "%s is registered anew at the restore's index", inst.ID)
	}
	_, echoIdx := f.InstancesOf("echo")
	_, webIdx := f.InstancesOf("web")
	_, timeIdx := f.InstancesOf("time")
	assert.Equal(t, []uint64{50, 50, 50}, []uint64{echoIdx, webIdx, timeIdx}, "every type's index moves, the vanished one's too")

	// The cluster stays the live one.
	assert.Equal(t, "live-cluster", f.ClusterID())
	addr, ok := f.NodeHTTPAddr("n1")
	assert.True(t, ok)
	assert.Equal(t, "127.0.0.1:8001", addr)
	assert.Equal(t, LogFormat, f.NodeFormat("n1"))
	_, ok = f.NodeHTTPAddr("old")
	assert.False(t, ok, "the backup's binders are not this cluster's")

	// The request ids are the backup's.
	assert.True(t, f.RequestAppliedTo("backup-key", "x"))
	assert.False(t, f.RequestAppliedTo("live-key", "gone"))
	// A resend of the backup's deregistration answers the restore's index.
	res = apply(t, f, 51, DeregisterCmd{ID: "x", RequestID: "backup-key"})
	require.NoError(t, res.Err)
	assert.Equal(t, uint64(50), res.Index)
}

func TestRestoreTellsTheObserverEveryChange(t *testing.T) {
	var got []Change
	var at []uint64
	f := liveTable(t, func(index uint64, cs []Change) {
		at = append(at, index)
		got = append(got, cs...)
	})
	got, at = nil, nil
	apply(t, f, 50, backupOf(t, reg("a", "echo", 9), reg("c", "web", 3)))
	require.Equal(t, []uint64{50}, at, "one notification, for the whole entry")
	require.Len(t, got, 3)
	assert.Equal(t, Removed, got[0].Kind)
	assert.Equal(t, "b", got[0].Instance.ID)
	assert.Equal(t, ReasonRestored, got[0].Reason)
	assert.Equal(t, Added, got[1].Kind)
	assert.Equal(t, "a", got[1].Instance.ID)
	require.NotNil(t, got[1].Replaced, "a was live: the restore replaces it")
	assert.Equal(t, 1, got[1].Replaced.Port)
	assert.Equal(t, 9, got[1].Instance.Port)
	assert.Equal(t, Added, got[2].Kind)
	assert.Equal(t, "c", got[2].Instance.ID)
	assert.Nil(t, got[2].Replaced)
	for _, c := range got {
		assert.Equal(t, uint64(50), c.Index)
	}
}

// Nodes with different pasts that apply the same restore entry end with
// the same table; so do a node that replays the log and one that installs
// a snapshot taken after the restore.
func TestRestoreIsDeterministic(t *testing.T) {
	backup := backupOf(t, reg("a", "echo", 9), RegisterCmd{ID: "c", Type: "web", Address: "h.example", Port: 3, Tags: []string{"t"}})
	data, err := Encode(backup)
	require.NoError(t, err)

	log := []Command{reg("p", "echo", 1), reg("q", "time", 2)}
	replayed := New(nil)
	for i, c := range log {
		apply(t, replayed, uint64(i+1), c)
	}
	replayed.Apply(&raft.Log{Index: 3, Data: data})

	other := New(nil) // another history up to the restore
	apply(t, other, 1, reg("z", "zzz", 1))
	other.Apply(&raft.Log{Index: 3, Data: data})

	installed := New(nil)
	apply(t, installed, 1, reg("stale", "echo", 1))
	require.NoError(t, installed.Restore(io.NopCloser(bytes.NewReader(snapshotOf(t, replayed)))))

	for _, f := range []*FSM{other, installed} {
		assert.Equal(t, replayed.TableHash(), f.TableHash())
		a, ai := replayed.All()
		b, bi := f.All()
		assert.Equal(t, ai, bi)
		require.Equal(t, len(a), len(b))
		for i := range a {
			assert.Equal(t, a[i].ID, b[i].ID)
			assert.Equal(t, a[i].Index, b[i].Index)
			assert.Equal(t, a[i].Tags, b[i].Tags)
		}
	}
}

// Restoring an empty backup empties the table; restoring one into an empty
// table of nothing changes nothing the readers see.
func TestRestoreEmptyBackup(t *testing.T) {
	empty := backupOf(t)
	f := liveTable(t, nil)
	require.NoError(t, apply(t, f, 50, empty).Err)
	assert.Equal(t, 0, f.Len())
	assert.Equal(t, uint64(50), f.LastChange())
	_, idx := f.InstancesOf("echo")
	assert.Equal(t, uint64(50), idx)

	g := New(nil)
	require.NoError(t, apply(t, g, 7, empty).Err)
	assert.Equal(t, uint64(0), g.LastChange(), "nothing changed")
	assert.Equal(t, uint64(7), g.Applied())
}

func gz(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, err := zw.Write([]byte(s))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return b.Bytes()
}

// A restore entry whose table is damaged or breaks a rule is refused, the
// same on every node, and changes nothing.
func TestRestoreRefusesABadTable(t *testing.T) {
	good := backupOf(t, reg("a", "echo", 1)).Table
	cases := map[string][]byte{
		"not gzip":       []byte("not gzip at all"),
		"truncated gzip": good[:len(good)-6],
		"not JSON":       gz(t, "]["),
		"newer version":  gz(t, `{"version":99,"services":[]}`),
		"duplicate id":   gz(t, `{"version":1,"type_index":{"t":1},"services":[{"id":"x","type":"t","address":"127.0.0.1","port":1},{"id":"x","type":"t","address":"127.0.0.1","port":2}]}`),
		"bad instance":   gz(t, `{"version":1,"type_index":{"t":1},"services":[{"id":"x","type":"T T","address":"127.0.0.1","port":1}]}`),
		"empty":          nil,
		"bad request id": gz(t, `{"version":1,"requests":[{"id":"","index":1}]}`),
	}
	for name, table := range cases {
		t.Run(name, func(t *testing.T) {
			armed := false
			f := liveTable(t, func(uint64, []Change) {
				if armed {
					t.Error("a refused restore told the observer of a change")
				}
			})
			armed = true
			before := f.TableHash()
			beforeAll, beforeLast := f.All()
			data, err := Encode(RestoreCmd{Table: table})
			require.NoError(t, err)
			res, ok := f.Apply(&raft.Log{Index: 50, Data: data}).(*Result)
			require.True(t, ok)
			assert.ErrorIs(t, res.Err, ErrBadCommand)
			assert.Equal(t, before, f.TableHash())
			afterAll, afterLast := f.All()
			assert.Equal(t, beforeAll, afterAll)
			assert.Equal(t, beforeLast, afterLast)
			assert.Equal(t, "live-cluster", f.ClusterID())
			assert.True(t, f.RequestAppliedTo("live-key", "gone"))
			assert.Equal(t, uint64(50), f.Applied(), "the entry is applied, as a refusal")
		})
	}
}

// A restore entry's size is bounded before it reaches raft.
func TestRestoreValidateBoundsTheEntry(t *testing.T) {
	assert.ErrorIs(t, Validate(RestoreCmd{Table: make([]byte, MaxRestoreTableBytes+1)}), ErrBadCommand)
	assert.ErrorIs(t, Validate(RestoreCmd{}), ErrBadCommand)
	assert.NoError(t, Validate(RestoreCmd{Table: []byte{1}}), "the table itself is checked when applied")
}

// A restore is written alone: inside a batch it is refused, and so are
// none of the batch's other commands.
func TestRestoreInsideABatchIsRefused(t *testing.T) {
	restore, err := Encode(backupOf(t, reg("c", "web", 3)))
	require.NoError(t, err)
	register, err := Encode(reg("d", "echo", 4))
	require.NoError(t, err)
	data, err := Encode(BatchCmd{Commands: []json.RawMessage{register, restore}})
	require.NoError(t, err)
	f := liveTable(t, nil)
	res := f.Apply(&raft.Log{Index: 50, Data: data}).(*BatchResult)
	require.Len(t, res.Results, 2)
	assert.NoError(t, res.Results[0].Err)
	assert.ErrorIs(t, res.Results[1].Err, ErrBadCommand)
	_, ok := f.Get("d")
	assert.True(t, ok)
	_, ok = f.Get("c")
	assert.False(t, ok)
}

// A backup's table carries the instances and request ids, not the cluster
// id (a credential between binders) nor the binders' addresses.
func TestBackupTableLeavesTheClusterOut(t *testing.T) {
	f := liveTable(t, nil)
	table, applied := f.BackupTable()
	assert.Equal(t, uint64(6), applied)
	assert.NotContains(t, string(table), "live-cluster")
	assert.NotContains(t, string(table), "127.0.0.1:8001")
	loaded, err := LoadBackup(bytes.NewReader(table))
	require.NoError(t, err)
	assert.Equal(t, f.TableHash(), loaded.TableHash(), "the instances, with their own indexes, are all there")
	assert.True(t, loaded.RequestAppliedTo("live-key", "gone"))
	assert.Equal(t, "live-cluster", f.ClusterID(), "the live table is untouched")

	_, err = LoadBackup(strings.NewReader(`{"version":2}`))
	assert.ErrorIs(t, err, ErrSnapshotVersion)
}
