package binder_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/httpapi"
	"github.com/lieur/lieur/transport/raftnet"
)

// startReplica starts an in-process binder that joins the cluster through
// the node at via as a read replica (Config.Nonvoter), and waits until it
// has caught up and every node knows its HTTP address.
func startReplica(t *testing.T, id string, via *testNode, logs *lockedBuffer, cluster []*testNode) *testNode {
	t.Helper()
	s, err := raftnet.Listen("127.0.0.1:0", "")
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	peer := httpapi.NewPeerClient()
	node, err := binder.New(binder.Config{
		ID: id, HTTPAddr: l.Addr().String(), DataDir: t.TempDir(), Join: "http://" + via.addr, Nonvoter: true,
		Stream: s, Peer: peer, WriteHold: 500 * time.Millisecond,
		Logger: hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Info, Output: logs}),
	})
	require.NoError(t, err)
	srv := &http.Server{Handler: httpapi.NewServer(node, nil), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	tn := &testNode{node: node, srv: srv, peer: peer, addr: l.Addr().String()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = node.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; tn.close() })
	await(t, 20*time.Second, id+" caught up and announced", func() bool {
		if !node.CaughtUp() {
			return false
		}
		for _, n := range cluster {
			_, members := n.node.Cluster(context.Background())
			found := false
			for _, m := range members {
				found = found || (m.ID == id && m.HTTPAddr == tn.addr)
			}
			if !found {
				return false
			}
		}
		return true
	})
	return tn
}

func memberOf(t *testing.T, n *binder.Node, id string) (binder.Member, bool) {
	t.Helper()
	_, members := n.Cluster(context.Background())
	for _, m := range members {
		if m.ID == id {
			return m, true
		}
	}
	return binder.Member{}, false
}

func leaderOf(t *testing.T, nodes []*testNode) *testNode {
	t.Helper()
	return nodes[awaitLeader(t, nodes)]
}

// A read replica applies the log and serves reads from its own memory,
// forwards writes, and never votes: with two of the three voters gone it
// does not campaign (raft says so in its log), and it refuses writes
// rather than make a quorum of two out of one voter and itself.
func TestReadReplicaServesReadsForwardsWritesAndNeverVotes(t *testing.T) {
	nodes := startNodes(t, 3)
	logs := &lockedBuffer{}
	r := startReplica(t, "r1", nodes[0], logs, nodes)
	ctx := context.Background()

	for _, n := range nodes {
		m, ok := memberOf(t, n.node, "r1")
		require.True(t, ok, "%s lists r1", n.node.ID())
		assert.False(t, m.Voter, "%s sees r1 as a nonvoter", n.node.ID())
	}
	require.NoError(t, r.node.ReadAllowed(), "the replica serves default reads")

	id, idx, err := r.node.Register(ctx, binder.Registration{Type: "echo", Address: "127.0.0.1", Port: 1})
	require.NoError(t, err, "a write through the replica is forwarded to the leader")
	inst, err := r.node.Lookup("echo")
	require.NoError(t, err)
	assert.Equal(t, idx, inst.Index, "and read back from the replica's memory")

	leader := leaderOf(t, nodes)
	_, idx2, err := leader.node.Register(ctx, binder.Registration{Type: "echo", Address: "127.0.0.1", Port: 2})
	require.NoError(t, err)
	require.True(t, r.node.WaitApplied(ctx, idx2), "the replica applies the leader's writes")
	list, _ := r.node.ServicesOf("echo")
	assert.Len(t, list, 2)
	assert.Equal(t, id, list[0].ID)

	// Two voters of three go: one voter and the replica are left, two
	// processes of four, which would be no quorum either way; what shows
	// the replica does not count is that it never campaigns.
	var kept *testNode
	closed := 0
	for _, n := range nodes {
		if closed < 2 {
			n.close()
			closed++
			continue
		}
		kept = n
	}
	await(t, 20*time.Second, "the replica to refuse to campaign", func() bool {
		return strings.Contains(logs.String(), "not part of stable configuration, aborting election")
	})
	await(t, 20*time.Second, "the last voter to campaign", func() bool { return kept.node.Status().State == "candidate" })
	assert.Equal(t, "follower", r.node.Status().State)
	_, _, err = r.node.Register(ctx, binder.Registration{Type: "echo", Address: "127.0.0.1", Port: 3})
	assert.ErrorIs(t, err, binder.ErrNoLeader, "no write without a quorum of voters")
	list, _ = r.node.ServicesOf("echo")
	assert.Len(t, list, 2, "stale reads still answer from the replica's memory")
}

// Promotion, demotion and leadership transfer through followers, and the
// rules that refuse them.
func TestPromoteDemoteAndTransferLeadership(t *testing.T) {
	nodes := startNodes(t, 3)
	r := startReplica(t, "r1", nodes[0], &lockedBuffer{}, nodes)
	ctx := context.Background()
	leader := leaderOf(t, nodes)
	var followers []*testNode
	for _, n := range nodes {
		if n != leader {
			followers = append(followers, n)
		}
	}
	f := followers[0].node

	err := f.Demote(ctx, followers[1].node.ID())
	assert.ErrorIs(t, err, binder.ErrInvalid)
	assert.ErrorContains(t, err, "would leave 2 voters")
	err = f.Demote(ctx, leader.node.ID())
	assert.ErrorIs(t, err, binder.ErrInvalid)
	assert.ErrorContains(t, err, "transfer leadership first")
	err = f.Promote(ctx, "n9")
	assert.ErrorIs(t, err, binder.ErrNotMember, "forwarded: the leader's 404 is about a member")
	assert.ErrorIs(t, err, binder.ErrUnknownID)
	_, err = f.TransferLeadership(ctx, "r1")
	assert.ErrorIs(t, err, binder.ErrInvalid)
	assert.ErrorContains(t, err, "nonvoter and cannot lead")
	assert.ErrorIs(t, f.Promote(ctx, "bad id!"), binder.ErrInvalid)

	require.NoError(t, f.Promote(ctx, "r1"))
	m, _ := memberOf(t, leader.node, "r1")
	assert.True(t, m.Voter, "promoted")
	require.NoError(t, r.node.Promote(ctx, "r1"), "promoting a voter changes nothing")
	require.NoError(t, f.Demote(ctx, "r1"), "four voters: one may go")
	m, _ = memberOf(t, leader.node, "r1")
	assert.False(t, m.Voter, "demoted")
	_, peers := leader.node.RaftPeers(ctx)
	require.Len(t, peers, 4)
	for _, p := range peers {
		assert.Equal(t, p.ID != "r1", p.Voter, "voter flag of %s", p.ID)
		assert.Equal(t, p.ID == leader.node.ID(), p.Leader, "leader flag of %s", p.ID)
		assert.True(t, p.Reachable, "%s answered", p.ID)
		assert.NotZero(t, p.LastIndex, "%s's last index", p.ID)
	}

	// Asked of one follower, leadership goes to the other.
	to := followers[1].node.ID()
	got, err := f.TransferLeadership(ctx, to)
	require.NoError(t, err)
	assert.Equal(t, to, got)
	await(t, 10*time.Second, to+" leads", followers[1].node.IsLeader)
	got, err = followers[1].node.TransferLeadership(ctx, to)
	require.NoError(t, err, "naming the leader changes nothing")
	assert.Equal(t, to, got)
}

// The leader refuses to remove a live voter when the voters left would
// not include a quorum it hears from; it removes the dead one.
func TestRemoveKeepsAQuorumTheLeaderHears(t *testing.T) {
	nodes := startNodes(t, 3)
	leader := leaderOf(t, nodes)
	var dead, live *testNode
	for _, n := range nodes {
		switch {
		case n == leader:
		case dead == nil:
			dead = n
		default:
			live = n
		}
	}
	dead.close()
	await(t, 10*time.Second, "the leader to record the dead follower unheard", func() bool {
		return leader.node.Status().Unheard[dead.node.ID()] > 0
	})
	m, _ := memberOf(t, live.node, dead.node.ID())
	assert.Positive(t, m.Unheard, "a follower shows the leader's record too")

	err := live.node.RemoveMember(context.Background(), live.node.ID())
	assert.ErrorIs(t, err, binder.ErrInvalid)
	assert.ErrorContains(t, err, "below their quorum of 2")
	_, ok := memberOf(t, leader.node, live.node.ID())
	assert.True(t, ok, "the live voter is still a member")

	require.NoError(t, live.node.RemoveMember(context.Background(), dead.node.ID()))
	_, members := leader.node.Cluster(context.Background())
	assert.Len(t, members, 2)
}

func deadServersRemoved(t *testing.T, n *binder.Node) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(n.Collectors()...)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "lieur_dead_servers_removed_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no lieur_dead_servers_removed_total metric")
	return 0
}

// With CleanupDeadAfter, the leader removes a voter whose heartbeats have
// failed that long, and counts it; it keeps the next dead voter, since
// removing it would leave two.
func TestCleanupRemovesADeadVoterButKeepsThree(t *testing.T) {
	c := startPartitionableNodes(t, 4, func(cfg *binder.Config) { cfg.CleanupDeadAfter = time.Second })
	li := c.leaderIndex()
	require.GreaterOrEqual(t, li, 0)
	leader := c.nodes[li].node
	var victims []int
	for i := range c.nodes {
		if i != li {
			victims = append(victims, i)
		}
	}
	// A record of failed heartbeats to a follower that is in fact alive
	// (its "resumed" observation lost): the leader asks it before removing
	// it, and it answers that it follows this leader.
	alive := c.nodes[victims[2]].node.ID()
	leader.NoteFailedHeartbeat(alive, time.Now().Add(-time.Hour))
	require.Contains(t, leader.Status().Unheard, alive)
	// Well before the record would expire (10 s): a cleanup pass dropped it.
	await(t, 8*time.Second, "the leader to drop its record of "+alive, func() bool {
		_, ok := leader.Status().Unheard[alive]
		return !ok
	})
	_, ok := memberOf(t, leader, alive)
	require.True(t, ok, "a server that answers as a follower of this leader is kept")
	assert.Equal(t, 0.0, deadServersRemoved(t, leader))

	// Cut off from Raft, not closed: its HTTP API still answers, and says
	// it follows no leader, so the check before removal says go.
	first := c.nodes[victims[0]].node.ID()
	c.isolate(victims[0])
	await(t, 20*time.Second, "the leader to remove "+first+" and count it", func() bool {
		_, ok := memberOf(t, leader, first)
		return !ok && deadServersRemoved(t, leader) == 1
	})
	assert.Empty(t, leader.Status().Unheard, "nothing else is unheard")

	second := c.nodes[victims[1]].node.ID()
	c.isolate(victims[1])
	// Unheard for twice the cleanup delay: several passes had the chance
	// to remove it.
	await(t, 20*time.Second, second+" unheard for 2s", func() bool {
		return leader.Status().Unheard[second] >= 2*time.Second
	})
	_, ok = memberOf(t, leader, second)
	assert.True(t, ok, "three voters: the dead one stays")
	assert.Equal(t, 1.0, deadServersRemoved(t, leader))
	_, _, err := leader.Register(context.Background(), binder.Registration{Type: "echo", Address: "127.0.0.1", Port: 1})
	assert.NoError(t, err, "two voters of three still commit")
}
