package binder

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/fsm"
	"github.com/lieur/lieur/transport/raftnet"
)

// lonePeer is the Peer of a one-node cluster: there is nobody to call.
type lonePeer struct{ Peer }

// startLone starts a one-node cluster and waits until it leads, is ready
// and has announced itself.
func startLone(t *testing.T, tune ...func(*Config)) *Node {
	t.Helper()
	stream, err := raftnet.Listen("127.0.0.1:0", "")
	require.NoError(t, err)
	cfg := Config{ID: "n1", HTTPAddr: "127.0.0.1:1", DataDir: t.TempDir(),
		Peers: []PeerAddr{{ID: "n1", RaftAddr: stream.Addr().String()}}, Stream: stream, Peer: lonePeer{}}
	for _, f := range tune {
		f(&cfg)
	}
	n, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; _ = n.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for !(n.IsLeader() && n.lead.isReady() && n.fsm.NodeFormat("n1") == fsm.LogFormat) {
		require.True(t, time.Now().Before(deadline), "the node did not lead and announce itself")
		time.Sleep(5 * time.Millisecond)
	}
	return n
}

// While a member has not announced a build that applies scopes (an older
// build, mid-upgrade), the leader checks a scope itself and writes the
// command without it, so that every member applies it alike; once all
// have, the scope goes into the log for the table to decide. The cluster
// id waits for the same.
func TestScopesAndClusterIDWaitForEveryMember(t *testing.T) {
	n := startLone(t)
	ctx := context.Background()
	require.Eventually(t, func() bool { return n.fsm.ClusterID() != "" }, 10*time.Second, 5*time.Millisecond, "the cluster id once every member (here: one) announced format 2")
	_, _, err := n.Register(ctx, Registration{ID: "d1", Type: "db", Address: "127.0.0.1", Port: 5432})
	require.NoError(t, err)

	scoped := fsm.RegisterCmd{ID: "e1", Type: "echo", Address: "127.0.0.1", Port: 1, Scope: []string{"echo"}}
	got, err := n.admit(ctx, scoped)
	require.NoError(t, err)
	assert.Equal(t, []string{"echo"}, got.(fsm.RegisterCmd).Scope, "format 2: the scope goes into the log")

	// The node as an older build would have announced it: no format.
	_, err = n.apply(ctx, fsm.NodeMetaCmd{NodeID: "n1", HTTPAddr: "127.0.0.1:1"}, true)
	require.NoError(t, err)
	require.Equal(t, 1, n.clusterFormat())
	assert.Equal(t, 1, n.Status().LogFormat)
	got, err = n.admit(ctx, scoped)
	require.NoError(t, err)
	assert.Nil(t, got.(fsm.RegisterCmd).Scope, "format 1: an older build would ignore the scope")

	// The leader's own check still refuses out-of-scope writes.
	_, err = n.admit(ctx, fsm.DeregisterCmd{ID: "d1", Scope: []string{"echo"}})
	assert.True(t, errors.Is(err, ErrForbidden), "deregister of another type: %v", err)
	_, err = n.admit(ctx, fsm.RegisterCmd{ID: "d1", Type: "echo", Address: "127.0.0.1", Port: 1, Scope: []string{"echo"}})
	assert.True(t, errors.Is(err, ErrForbidden), "register over another type: %v", err)
	_, err = n.admit(ctx, fsm.DeregisterCmd{ID: "nobody", RequestID: "fresh"})
	assert.True(t, errors.Is(err, ErrUnknownID), "unknown id with a fresh request id: %v", err)
	_, err = n.Deregister(ctx, "d1", "", []string{"echo"})
	assert.True(t, errors.Is(err, ErrForbidden))
	_, held := n.fsm.Get("d1")
	assert.True(t, held)
}

// A type that leaves the table takes its round-robin cursor with it, and
// no waiter bookkeeping outlives its waiters.
func TestCursorsFollowTheTable(t *testing.T) {
	n := startLone(t)
	ctx := context.Background()
	for _, typ := range []string{"a", "b", "c"} {
		_, _, err := n.Register(ctx, Registration{ID: typ + "1", Type: typ, Address: "127.0.0.1", Port: 1})
		require.NoError(t, err)
		_, err = n.Lookup(typ)
		require.NoError(t, err)
	}
	assert.Equal(t, Footprint{Cursors: 3, Types: 3}, n.Footprint())
	for _, typ := range []string{"a", "b"} {
		_, err := n.Deregister(ctx, typ+"1", "", nil)
		require.NoError(t, err)
	}
	assert.Equal(t, Footprint{Cursors: 1, Types: 1}, n.Footprint())
	wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	_, err := n.LookupWait(wctx, "zzz")
	cancel()
	assert.ErrorIs(t, err, ErrUnknownService)
	assert.Equal(t, Footprint{Cursors: 1, Types: 1}, n.Footprint(), "a lookup of an unknown type leaves nothing")
}
