package binder_test

import (
	"bytes"
	"context"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/binder"
)

// ids returns the ids a node holds, sorted.
func idsAt(n *binder.Node) []string {
	all, _ := n.Services()
	out := make([]string, 0, len(all))
	for _, i := range all {
		out = append(out, i.ID)
	}
	sort.Strings(out)
	return out
}

// A backup asked of a follower is taken on the leader, holds every
// acknowledged write, and names the leader's index and term; a damaged
// file is refused through any node and changes nothing; a good one
// replaces the table on every node through the log, wakes the watchers,
// and gives every restored lease a fresh start on the leader.
func TestBackupAndRestoreThroughAFollower(t *testing.T) {
	nodes := startNodes(t, 3)
	leader := nodes[awaitLeader(t, nodes)].node
	f := follower(t, nodes)
	ctx := context.Background()

	reg := func(id, typ string, port int, ttl time.Duration) uint64 {
		t.Helper()
		_, idx, err := f.Register(ctx, binder.Registration{ID: id, Type: typ, Address: "127.0.0.1", Port: port, TTL: ttl})
		require.NoError(t, err)
		return idx
	}
	reg("a", "echo", 1, 0)
	reg("b", "echo", 2, 0)
	// A lease nobody renews, on a port nothing listens on: once its TTL
	// passes the leader probes it and removes it.
	last := reg("l", "lease", deadPort(t), 2*time.Second)

	var file []byte
	t.Run("backup through a follower", func(t *testing.T) {
		var err error
		file, err = f.Backup(ctx)
		require.NoError(t, err)
		info, err := binder.InspectSnapshot(bytes.NewReader(file))
		require.NoError(t, err)
		assert.Equal(t, leader.ID(), info.Node, "taken on the leader")
		assert.GreaterOrEqual(t, info.Index, last, "holds every acknowledged write")
		assert.Equal(t, leader.Status().Term, info.Term)
		assert.Equal(t, 3, info.Instances)
		assert.Equal(t, map[string]int{"echo": 2, "lease": 1}, info.Types)
		assert.Equal(t, leader.Status().TableHash, info.TableHash)
	})

	// The table moves on after the backup.
	reg("c", "time", 3, 0)
	_, err := f.Deregister(ctx, "a", "", nil)
	require.NoError(t, err)
	await(t, 5*time.Second, "the lease to expire live", func() bool {
		for _, id := range idsAt(leader) {
			if id == "l" {
				return false
			}
		}
		return true
	})
	before := leader.Status()

	t.Run("a damaged file is refused and changes nothing", func(t *testing.T) {
		flipped := bytes.Clone(file)
		flipped[len(flipped)-5] ^= 1
		for name, bad := range map[string][]byte{"truncated": file[:len(file)-9], "checksum": flipped} {
			for _, n := range []*binder.Node{f, leader} {
				_, err := n.Restore(ctx, bad)
				assert.ErrorIs(t, err, binder.ErrBadSnapshot, "%s via %s", name, n.ID())
			}
		}
		after := leader.Status()
		assert.Equal(t, before.TableHash, after.TableHash)
		assert.Equal(t, before.LastLogIndex, after.LastLogIndex, "nothing reached the log")
	})

	t.Run("restore through a follower", func(t *testing.T) {
		_, echoIdx := f.ServicesOf("echo")
		woke := make(chan bool, 1)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		go func() { woke <- f.WaitIndex(wctx, "echo", echoIdx) }()

		res, err := f.Restore(ctx, file)
		require.NoError(t, err)
		assert.Equal(t, 3, res.Services)
		assert.Equal(t, 2, res.Types)
		assert.Greater(t, res.Index, before.AppliedIndex)

		for _, tn := range nodes {
			n := tn.node
			require.True(t, n.WaitApplied(wctx, res.Index), "%s applies the restore", n.ID())
			assert.Equal(t, []string{"a", "b", "l"}, idsAt(n), "%s holds the backup's table", n.ID())
			all, _ := n.Services()
			for _, inst := range all {
				assert.Equal(t, res.Index, inst.Index, "%s: %s is registered at the restore's index", n.ID(), inst.ID)
			}
		}
		hash := leader.Status().TableHash
		for _, tn := range nodes {
			assert.Equal(t, hash, tn.node.Status().TableHash, "%s", tn.node.ID())
		}
		select {
		case ok := <-woke:
			assert.True(t, ok, "a watcher of a restored type wakes")
		case <-wctx.Done():
			t.Fatal("a watcher of a restored type did not wake")
		}
	})

	t.Run("the restored lease starts afresh on the leader", func(t *testing.T) {
		// Its registration is back, with a new index, and the leader
		// tracks it again: unrenewed, it expires one TTL later.
		start := time.Now()
		await(t, 10*time.Second, "the restored lease to expire", func() bool {
			for _, id := range idsAt(leader) {
				if id == "l" {
					return false
				}
			}
			return true
		})
		assert.GreaterOrEqual(t, time.Since(start), time.Second, "not before its TTL (2s) since the restore, give or take")
		await(t, 5*time.Second, "the follower to apply the expiry", func() bool { return len(idsAt(f)) == 2 })
		assert.Equal(t, []string{"a", "b"}, idsAt(f))
	})
}
