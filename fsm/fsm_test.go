package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func apply(t *testing.T, f *FSM, index uint64, c Command) *Result {
	t.Helper()
	data, err := Encode(c)
	require.NoError(t, err)
	res, ok := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data}).(*Result)
	require.True(t, ok)
	return res
}

func reg(id, typ string, port int) RegisterCmd {
	return RegisterCmd{ID: id, Type: typ, Address: "127.0.0.1", Port: port}
}

func TestApply(t *testing.T) {
	tests := []struct {
		name    string
		cmds    []Command
		wantErr error // of the last command
		wantIDs []string
	}{
		{"register", []Command{reg("a", "echo", 1)}, nil, []string{"a"}},
		{"register replaces same id", []Command{reg("a", "echo", 1), reg("a", "echo", 2)}, nil, []string{"a"}},
		{"deregister", []Command{reg("a", "echo", 1), DeregisterCmd{ID: "a"}}, nil, nil},
		{"deregister unknown", []Command{DeregisterCmd{ID: "a"}}, ErrUnknownInstance, nil},
		{"remove verified registration", []Command{reg("a", "echo", 1), RemoveCmd{ID: "a", RegIndex: 1}}, nil, nil},
		{"remove refuses newer registration", []Command{reg("a", "echo", 1), reg("a", "echo", 2), RemoveCmd{ID: "a", RegIndex: 1}}, ErrSuperseded, []string{"a"}},
		{"remove unknown", []Command{RemoveCmd{ID: "a", RegIndex: 1}}, ErrUnknownInstance, nil},
		{"type change moves instance", []Command{reg("a", "echo", 1), reg("a", "time", 1)}, nil, []string{"a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := New(nil)
			var res *Result
			for i, c := range tc.cmds {
				res = apply(t, f, uint64(i+1), c)
			}
			if tc.wantErr != nil {
				assert.ErrorIs(t, res.Err, tc.wantErr)
			} else {
				assert.NoError(t, res.Err)
			}
			all, _ := f.All()
			var ids []string
			for _, i := range all {
				ids = append(ids, i.ID)
			}
			assert.Equal(t, tc.wantIDs, ids)
		})
	}
}

func TestTypeChangeLeavesOldType(t *testing.T) {
	f := New(nil)
	apply(t, f, 1, reg("a", "echo", 1))
	apply(t, f, 2, reg("a", "time", 1))
	echo, echoIdx := f.InstancesOf("echo")
	assert.Empty(t, echo)
	assert.Equal(t, uint64(2), echoIdx, "the emptied type's index moves so its watchers wake")
	tm, _ := f.InstancesOf("time")
	require.Len(t, tm, 1)
}

func TestInstancesSortedAndIndexes(t *testing.T) {
	f := New(nil)
	apply(t, f, 1, reg("c", "echo", 3))
	apply(t, f, 2, reg("a", "echo", 1))
	apply(t, f, 3, reg("b", "time", 2))
	apply(t, f, 4, reg("b2", "echo", 2))
	list, idx := f.InstancesOf("echo")
	require.Len(t, list, 3)
	assert.Equal(t, []string{"a", "b2", "c"}, []string{list[0].ID, list[1].ID, list[2].ID})
	assert.Equal(t, uint64(4), idx)
	_, timeIdx := f.InstancesOf("time")
	assert.Equal(t, uint64(3), timeIdx)
	all, last := f.All()
	assert.Equal(t, uint64(4), last)
	assert.Equal(t, "b", all[3].ID, "sorted by type then id")
	// Node metadata is not a service change.
	apply(t, f, 5, NodeMetaCmd{NodeID: "n1", HTTPAddr: "127.0.0.1:1"})
	assert.Equal(t, uint64(4), f.LastChange())
	addr, ok := f.NodeHTTPAddr("n1")
	assert.True(t, ok)
	assert.Equal(t, "127.0.0.1:1", addr)
	apply(t, f, 6, NodeForgetCmd{NodeID: "n1"})
	_, ok = f.NodeHTTPAddr("n1")
	assert.False(t, ok)
}

func TestObserverSeesChanges(t *testing.T) {
	var got []Change
	f := New(func(_ uint64, cs []Change) { got = append(got, cs...) })
	apply(t, f, 1, reg("a", "echo", 1))
	apply(t, f, 2, reg("a", "echo", 2))
	apply(t, f, 3, RemoveCmd{ID: "a", RegIndex: 2, Reason: ReasonReportedDown})
	apply(t, f, 4, DeregisterCmd{ID: "a"}) // unknown: no change
	require.Len(t, got, 3)
	assert.Equal(t, Added, got[0].Kind)
	assert.Nil(t, got[0].Replaced)
	assert.Equal(t, Added, got[1].Kind)
	require.NotNil(t, got[1].Replaced)
	assert.Equal(t, 1, got[1].Replaced.Port)
	assert.Equal(t, Removed, got[2].Kind)
	assert.Equal(t, ReasonReportedDown, got[2].Reason)
}

func TestBadCommands(t *testing.T) {
	f := New(nil)
	for _, data := range []string{"", "{", `{"type":"nope/v1","body":{}}`, `{"type":"register/v1","body":"x"}`, `[]`} {
		res := f.Apply(&raft.Log{Index: 1, Data: []byte(data)}).(*Result)
		assert.ErrorIs(t, res.Err, ErrBadCommand, "data %q", data)
	}
	assert.Equal(t, 0, f.Len())
}

// Two tables fed the same log agree; a different log gives a different hash.
func TestTableHashDeterministic(t *testing.T) {
	log := []Command{reg("a", "echo", 1), RegisterCmd{ID: "b", Type: "echo", Address: "h", Port: 2, Meta: map[string]string{"x": "1", "y": "2"}}, DeregisterCmd{ID: "a"}, reg("c", "time", 3)}
	f1, f2 := New(nil), New(nil)
	for i, c := range log {
		apply(t, f1, uint64(i+1), c)
		apply(t, f2, uint64(i+1), c)
	}
	assert.Equal(t, f1.TableHash(), f2.TableHash())
	apply(t, f2, 5, reg("d", "echo", 4))
	assert.NotEqual(t, f1.TableHash(), f2.TableHash())
	assert.NotEqual(t, New(nil).TableHash(), f1.TableHash())
}

type sink struct {
	bytes.Buffer
	cancelled bool
}

func (s *sink) ID() string    { return "test" }
func (s *sink) Cancel() error { s.cancelled = true; return nil }
func (s *sink) Close() error  { return nil }

func snapshotOf(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	require.NoError(t, err)
	var s sink
	require.NoError(t, snap.Persist(&s))
	snap.Release()
	return s.Bytes()
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	f := New(nil)
	apply(t, f, 1, reg("a", "echo", 1))
	apply(t, f, 2, RegisterCmd{ID: "b", Type: "time", Address: "h", Port: 2, Meta: map[string]string{"k": "v"}})
	apply(t, f, 3, NodeMetaCmd{NodeID: "n1", HTTPAddr: "127.0.0.1:9"})
	apply(t, f, 4, DeregisterCmd{ID: "a"})
	data := snapshotOf(t, f)

	var changes []Change
	g := New(func(_ uint64, cs []Change) { changes = append(changes, cs...) })
	apply(t, g, 1, reg("stale", "echo", 9))
	changes = nil
	require.NoError(t, g.Restore(io.NopCloser(bytes.NewReader(data))))
	assert.Equal(t, f.TableHash(), g.TableHash())
	assert.Equal(t, f.LastChange(), g.LastChange())
	assert.Equal(t, uint64(4), g.Applied(), "the applied index survives a snapshot")
	_, echoIdx := g.InstancesOf("echo")
	assert.Equal(t, uint64(4), echoIdx)
	addr, _ := g.NodeHTTPAddr("n1")
	assert.Equal(t, "127.0.0.1:9", addr)
	require.Len(t, changes, 2, "restore reports what it removed and added")
	assert.Equal(t, Removed, changes[0].Kind)
	assert.Equal(t, "stale", changes[0].Instance.ID)
	assert.Equal(t, Added, changes[1].Kind)
	assert.Equal(t, "b", changes[1].Instance.ID)
}

func TestRestoreRejectsBadSnapshotsAndKeepsTable(t *testing.T) {
	good := snapshotOf(t, func() *FSM { f := New(nil); apply(t, f, 1, reg("a", "echo", 1)); return f }())
	tests := map[string]string{
		"truncated":     string(good[:len(good)/2]),
		"empty":         "",
		"wrong version": strings.Replace(string(good), `"version":1`, `"version":99`, 1),
		"duplicate ids": `{"version":1,"services":[{"id":"x","type":"t"},{"id":"x","type":"t"}]}`,
		"missing type":  `{"version":1,"services":[{"id":"x"}]}`,
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			f := New(nil)
			apply(t, f, 1, reg("keep", "echo", 1))
			before := f.TableHash()
			err := f.Restore(io.NopCloser(strings.NewReader(data)))
			require.Error(t, err)
			if name == "wrong version" {
				assert.True(t, errors.Is(err, ErrSnapshotVersion))
			}
			assert.Equal(t, before, f.TableHash(), "a failed restore leaves the table untouched")
		})
	}
}

func TestSnapshotIsolatedFromLaterApplies(t *testing.T) {
	f := New(nil)
	apply(t, f, 1, reg("a", "echo", 1))
	snap, err := f.Snapshot()
	require.NoError(t, err)
	apply(t, f, 2, reg("b", "echo", 2))
	apply(t, f, 3, DeregisterCmd{ID: "a"})
	var s sink
	require.NoError(t, snap.Persist(&s))
	g := New(nil)
	require.NoError(t, g.Restore(io.NopCloser(&s.Buffer)))
	all, _ := g.All()
	require.Len(t, all, 1)
	assert.Equal(t, "a", all[0].ID)
}

// A resent command with a request id already applied changes nothing and
// answers the first one's index, also after a snapshot round trip.
func TestRequestIDsDeduplicate(t *testing.T) {
	f := New(nil)
	apply(t, f, 1, reg("a", "echo", 1))
	first := apply(t, f, 2, DeregisterCmd{ID: "a", RequestID: "r1"})
	require.NoError(t, first.Err)
	apply(t, f, 3, reg("a", "echo", 1))
	again := apply(t, f, 4, DeregisterCmd{ID: "a", RequestID: "r1"})
	require.NoError(t, again.Err)
	assert.Equal(t, uint64(2), again.Index, "the resend answers the first index")
	assert.Equal(t, 1, f.Len(), "the resend removed nothing")

	g := New(nil)
	require.NoError(t, g.Restore(io.NopCloser(bytes.NewReader(snapshotOf(t, f)))))
	res := apply(t, g, 5, DeregisterCmd{ID: "a", RequestID: "r1"})
	assert.Equal(t, uint64(2), res.Index)
	assert.Equal(t, 1, g.Len(), "the restored table remembers the request")

	// A failed command is not remembered: resending it fails alike.
	bad := apply(t, g, 6, DeregisterCmd{ID: "zz", RequestID: "r2"})
	assert.ErrorIs(t, bad.Err, ErrUnknownInstance)
	bad = apply(t, g, 7, DeregisterCmd{ID: "zz", RequestID: "r2"})
	assert.ErrorIs(t, bad.Err, ErrUnknownInstance)
}

// A request id is the key of one request: sent again for another
// instance, it is refused, not answered with the first one's index (which
// would say the second deregistration happened).
func TestRequestIDOfAnotherInstanceIsRefused(t *testing.T) {
	f := New(nil)
	apply(t, f, 1, reg("a", "echo", 1))
	apply(t, f, 2, reg("b", "echo", 2))
	require.NoError(t, apply(t, f, 3, DeregisterCmd{ID: "a", RequestID: "k"}).Err)
	res := apply(t, f, 4, DeregisterCmd{ID: "b", RequestID: "k"})
	assert.ErrorIs(t, res.Err, ErrRequestReused)
	assert.Equal(t, 1, f.Len(), "b is still there")
	assert.True(t, f.RequestAppliedTo("k", "a"))
	assert.False(t, f.RequestAppliedTo("k", "b"))

	g := New(nil)
	require.NoError(t, g.Restore(io.NopCloser(bytes.NewReader(snapshotOf(t, f)))))
	assert.ErrorIs(t, apply(t, g, 5, DeregisterCmd{ID: "b", RequestID: "k"}).Err, ErrRequestReused, "remembered through a snapshot")
	assert.NoError(t, apply(t, g, 6, DeregisterCmd{ID: "a", RequestID: "k"}).Err, "the resend of the first is still answered")
}

func TestRequestLogIsBounded(t *testing.T) {
	var r requestLog
	for i := 0; i < MaxRememberedRequests+10; i++ {
		r.add(strings.Repeat("x", 1)+string(rune('a'+i%26))+strconv.Itoa(i), remembered{index: uint64(i)})
	}
	assert.Len(t, r.order, MaxRememberedRequests)
	assert.Len(t, r.index, MaxRememberedRequests)
	_, ok := r.seen("xa0")
	assert.False(t, ok, "the oldest request was forgotten")
}

func TestBatchAppliesEachCommandInOrder(t *testing.T) {
	f := New(nil)
	enc := func(c Command) json.RawMessage {
		b, err := Encode(c)
		require.NoError(t, err)
		return b
	}
	nested, err := Encode(BatchCmd{})
	require.NoError(t, err)
	data, err := Encode(BatchCmd{Commands: []json.RawMessage{
		enc(reg("a", "echo", 1)),
		enc(reg("b", "echo", 2)),
		enc(DeregisterCmd{ID: "zz"}),
		nested,
		enc(DeregisterCmd{ID: "a"}),
	}})
	require.NoError(t, err)
	res, ok := f.Apply(&raft.Log{Index: 7, Data: data}).(*BatchResult)
	require.True(t, ok)
	require.Len(t, res.Results, 5)
	assert.NoError(t, res.Results[0].Err)
	assert.NoError(t, res.Results[1].Err)
	assert.ErrorIs(t, res.Results[2].Err, ErrUnknownInstance)
	assert.ErrorIs(t, res.Results[3].Err, ErrBadCommand, "batches do not nest")
	assert.NoError(t, res.Results[4].Err)
	all, last := f.All()
	require.Len(t, all, 1)
	assert.Equal(t, "b", all[0].ID)
	assert.Equal(t, uint64(7), all[0].Index)
	assert.Equal(t, uint64(7), last)
	assert.Equal(t, uint64(7), f.Applied())
}

// Lookups prefer healthy instances; the view that tells them apart is
// built once per change, and CountByType needs no copy of the table.
func TestHealthyOfAndCountByType(t *testing.T) {
	f := New(nil)
	apply(t, f, 1, reg("a", "echo", 1))
	apply(t, f, 2, reg("b", "echo", 2))
	apply(t, f, 3, reg("c", "time", 3))
	assert.Len(t, f.HealthyOf("echo"), 2, "all healthy: all of them")
	apply(t, f, 4, LeaseStateCmd{ID: "a", RegIndex: 1, Stale: true})
	healthy := f.HealthyOf("echo")
	require.Len(t, healthy, 1)
	assert.Equal(t, "b", healthy[0].ID)
	apply(t, f, 5, LeaseStateCmd{ID: "b", RegIndex: 2, Stale: true})
	assert.Len(t, f.HealthyOf("echo"), 2, "none healthy: all of them rather than none")
	assert.Nil(t, f.HealthyOf("nope"))
	assert.Equal(t, map[string]int{"echo": 2, "time": 1}, f.CountByType())
}
