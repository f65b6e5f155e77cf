package binder_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/fsm"
)

// one is a log entry's changes with a single registration of id.
func one(id string) []fsm.Change {
	return []fsm.Change{{Kind: fsm.Added, Instance: fsm.Instance{ID: id, Type: "echo", Address: "127.0.0.1", Port: 1}}}
}

func indexes(events []binder.Event) []uint64 {
	out := make([]uint64, len(events))
	for i, e := range events {
		out[i] = e.Index
	}
	return out
}

func ids(events []binder.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// The ring keeps the newest events only, hands them out newest first, and
// Since filters by index and caps by limit from the newest end.
func TestEventLogKeepsTheNewestAndHandsThemOutNewestFirst(t *testing.T) {
	l := binder.NewEventLog(4)
	events, newest, oldest := l.Since(0, 0)
	assert.Empty(t, events)
	assert.NotNil(t, events, "an empty answer is [] in JSON, not null")
	assert.Zero(t, newest)
	assert.Zero(t, oldest)

	for i := uint64(1); i <= 6; i++ {
		l.Append(i, time.Unix(int64(i), 0), one("e"))
	}
	events, newest, oldest = l.Since(0, 0)
	assert.Equal(t, []uint64{6, 5, 4, 3}, indexes(events), "1 and 2 fell out of a ring of 4")
	assert.Equal(t, uint64(6), newest)
	assert.Equal(t, uint64(3), oldest)
	assert.Equal(t, time.Unix(6, 0), events[0].Time)

	events, _, _ = l.Since(4, 0)
	assert.Equal(t, []uint64{6, 5}, indexes(events))
	events, _, _ = l.Since(0, 1)
	assert.Equal(t, []uint64{6}, indexes(events), "limit keeps the newest")
	events, newest, _ = l.Since(6, 0)
	assert.Empty(t, events)
	assert.Equal(t, uint64(6), newest)
	events, _, _ = l.Since(100, 0)
	assert.Empty(t, events, "an index from the future asks for nothing yet")

	l.Append(7, time.Now(), nil)
	_, newest, _ = l.Since(0, 0)
	assert.Equal(t, uint64(6), newest, "an entry without changes is no event")
}

// The changes of one entry share its index, newest first; when the ring
// dropped only part of an entry, oldest moves past it so that a client
// comparing its last index with oldest-1 learns it missed some.
func TestEventLogOldestAccountsForAPartlyDroppedEntry(t *testing.T) {
	l := binder.NewEventLog(3)
	l.Append(1, time.Now(), one("a"))
	batch := append(append(one("b"), one("c")...), one("d")...)
	l.Append(2, time.Now(), batch)
	events, newest, oldest := l.Since(0, 0)
	assert.Equal(t, []string{"d", "c", "b"}, ids(events), "a batch's changes, newest first")
	assert.Equal(t, []uint64{2, 2, 2}, indexes(events))
	assert.Equal(t, uint64(2), newest)
	assert.Equal(t, uint64(2), oldest, "entry 2 is whole; only entry 1 is gone")

	l.Append(3, time.Now(), one("e"))
	events, _, oldest = l.Since(0, 0)
	assert.Equal(t, []string{"e", "d", "c"}, ids(events))
	assert.Equal(t, uint64(3), oldest, "b of entry 2 is gone: a client at index 1 missed it (1 < 3-1)")
	_, _, oldest = l.Since(2, 0)
	assert.Equal(t, uint64(3), oldest, "a client at index 2 saw all of entry 2 (2 >= 3-1)")
}

// Wait returns at once when a newer event is held, blocks while none is,
// and wakes when one arrives.
func TestEventLogWaitWakesOnANewerEvent(t *testing.T) {
	l := binder.NewEventLog(8)
	l.Append(5, time.Now(), one("a"))
	require.True(t, l.Wait(context.Background(), 4), "an event above 4 is already there")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	assert.False(t, l.Wait(ctx, 5), "nothing above 5: waits until the context ends")

	woke := make(chan bool, 1)
	go func() { woke <- l.Wait(context.Background(), 6) }()
	// An event at 6 is not above 6: the waiter must keep waiting. The
	// next one, at 7, wakes it.
	l.Append(6, time.Now(), one("b"))
	l.Append(7, time.Now(), one("c"))
	select {
	case ok := <-woke:
		assert.True(t, ok)
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not wake on an event above its index")
	}
	events, _, _ := l.Since(6, 0)
	assert.Equal(t, []string{"c"}, ids(events))
}

// The ring never holds a history that goes back in the log: were the
// observer ever to go back, the ring starts over rather than hide what
// follows from clients waiting above the old newest index.
func TestEventLogStartsOverIfTheLogGoesBack(t *testing.T) {
	l := binder.NewEventLog(8)
	l.Append(10, time.Now(), one("a"))
	l.Append(4, time.Now(), one("b"))
	events, newest, oldest := l.Since(0, 0)
	assert.Equal(t, []string{"b"}, ids(events))
	assert.Equal(t, uint64(4), newest)
	assert.Equal(t, uint64(4), oldest)
}

func apply(t *testing.T, f *fsm.FSM, index uint64, c fsm.Command) {
	t.Helper()
	data, err := fsm.Encode(c)
	require.NoError(t, err)
	var res any = f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
	if r, ok := res.(*fsm.Result); ok {
		require.NoError(t, r.Err)
	}
}

type memSink struct{ bytes.Buffer }

func (*memSink) ID() string    { return "test" }
func (*memSink) Cancel() error { return nil }
func (*memSink) Close() error  { return nil }

// Every kind and reason of the API comes from a real FSM's changes: the
// ring is fed by fsm.New's observer as the node feeds it.
func TestEventsFromFSMChangesHaveTheAPIsKindsAndReasons(t *testing.T) {
	l := binder.NewEventLog(64)
	at := time.Date(2026, 12, 2, 10, 0, 0, 123e6, time.UTC)
	f := fsm.New(func(index uint64, changes []fsm.Change) { l.Append(index, at, changes) })
	reg := func(id string, port int) fsm.RegisterCmd {
		return fsm.RegisterCmd{ID: id, Type: "echo", Address: "127.0.0.1", Port: port}
	}
	withCheck := func(id string, status string) fsm.RegisterCmd {
		c := reg(id, 9)
		c.Checks = []fsm.Check{{ID: "service:" + id, Kind: fsm.CheckTTL, TTLMillis: 10000, Status: status}}
		return c
	}
	leased := reg("a", 1)
	leased.TTLMillis = 10000
	apply(t, f, 1, leased)
	apply(t, f, 2, leased) // again: replaced
	apply(t, f, 3, fsm.LeaseStateCmd{ID: "a", RegIndex: 2, Stale: true})
	apply(t, f, 4, fsm.LeaseStateCmd{ID: "a", RegIndex: 2, Stale: false})
	apply(t, f, 5, withCheck("b", fsm.StatusPassing))
	apply(t, f, 6, fsm.CheckStatusCmd{ID: "b", RegIndex: 5, CheckID: "service:b", Status: fsm.StatusCritical, Output: "down"})
	apply(t, f, 7, fsm.DeregisterCmd{ID: "a"})
	apply(t, f, 8, fsm.RemoveCmd{ID: "b", RegIndex: 5}) // a verified report
	apply(t, f, 9, reg("c", 3))
	apply(t, f, 10, fsm.RemoveCmd{ID: "c", RegIndex: 9, Reason: fsm.ReasonExpired})
	apply(t, f, 11, withCheck("d", fsm.StatusCritical))
	apply(t, f, 12, fsm.RemoveCmd{ID: "d", RegIndex: 11, Reason: fsm.ReasonCriticalTooLong})
	apply(t, f, 13, fsm.NodeMetaCmd{NodeID: "n1", HTTPAddr: "127.0.0.1:1"}) // not the table: no event

	events, newest, oldest := l.Since(0, 0)
	assert.Equal(t, uint64(12), newest)
	assert.Equal(t, uint64(1), oldest)
	type seen struct {
		Index                    uint64
		Kind, ID, Health, Reason string
	}
	var got []seen
	for _, e := range events {
		got = append(got, seen{e.Index, e.Kind, e.ID, e.Health, e.Reason})
		assert.Equal(t, at, e.Time)
		assert.Equal(t, "echo", e.Type)
		assert.Equal(t, "127.0.0.1", e.Address)
	}
	assert.Equal(t, []seen{
		{12, binder.EventRemoved, "d", "", fsm.ReasonCriticalTooLong},
		{11, binder.EventRegistered, "d", "", ""},
		{10, binder.EventRemoved, "c", "", fsm.ReasonExpired},
		{9, binder.EventRegistered, "c", "", ""},
		{8, binder.EventRemoved, "b", "", fsm.ReasonReportedDown},
		{7, binder.EventRemoved, "a", "", fsm.ReasonDeregistered},
		{6, binder.EventHealth, "b", fsm.StatusCritical, binder.EventReasonCheck},
		{5, binder.EventRegistered, "b", "", ""},
		{4, binder.EventHealth, "a", fsm.StatusPassing, binder.EventReasonLeaseRenewed},
		{3, binder.EventHealth, "a", fsm.HealthStaleLease, binder.EventReasonLeaseStale},
		{2, binder.EventRegistered, "a", "", binder.EventReasonReplaced},
		{1, binder.EventRegistered, "a", "", ""},
	}, got)
	assert.Equal(t, 1, events[len(events)-1].Port)

	// A batch: one entry, one index, its changes newest first.
	var raws []json.RawMessage
	for _, c := range []fsm.Command{reg("x", 4), reg("y", 5)} {
		data, err := fsm.Encode(c)
		require.NoError(t, err)
		raws = append(raws, data)
	}
	apply(t, f, 14, fsm.BatchCmd{Commands: raws})
	events, newest, _ = l.Since(12, 0)
	assert.Equal(t, uint64(14), newest)
	assert.Equal(t, []string{"y", "x"}, ids(events))
	assert.Equal(t, []uint64{14, 14}, indexes(events))

	// A snapshot restored into another table: its difference, all at the
	// snapshot's index (not the registrations' own), so the ring's
	// indexes still only grow.
	snap, err := f.Snapshot()
	require.NoError(t, err)
	var sink memSink
	require.NoError(t, snap.Persist(&sink))
	l2 := binder.NewEventLog(64)
	g := fsm.New(func(index uint64, changes []fsm.Change) { l2.Append(index, at, changes) })
	apply(t, g, 1, reg("old", 7))
	require.NoError(t, g.Restore(io.NopCloser(&sink.Buffer)))
	events, newest, _ = l2.Since(1, 0)
	assert.Equal(t, uint64(14), newest)
	require.Len(t, events, 3)
	for _, e := range events {
		assert.Equal(t, uint64(14), e.Index)
		if e.ID == "old" {
			assert.Equal(t, binder.EventRemoved, e.Kind)
			assert.NotEmpty(t, e.Reason, "a restore's removal says so")
		} else {
			assert.Equal(t, binder.EventRegistered, e.Kind)
		}
	}
}
