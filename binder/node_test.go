package binder_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/httpapi"
	"github.com/lieur/lieur/transport/raftnet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testNode is a binder with its HTTP API, in this process, on loopback.
type testNode struct {
	node *binder.Node
	srv  *http.Server
	peer *httpapi.PeerClient
	addr string
}

func (n *testNode) close() {
	_ = n.node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = n.srv.Shutdown(ctx)
	n.peer.Close()
}

// startNodes starts a cluster of n in-process binders that bootstrap
// together, and waits for a leader every node can forward to.
func startNodes(t *testing.T, n int) []*testNode {
	t.Helper()
	return startNodesWith(t, n, nil)
}

// startNodesWith is startNodes with node i's HTTP API served through
// wrap(i, api) when wrap is set.
func startNodesWith(t *testing.T, n int, wrap func(i int, api http.Handler) http.Handler) []*testNode {
	t.Helper()
	var raftLns []*raftnet.TCPStreamLayer
	var httpLns []net.Listener
	var peers []binder.PeerAddr
	for i := 0; i < n; i++ {
		s, err := raftnet.Listen("127.0.0.1:0", "")
		require.NoError(t, err)
		raftLns = append(raftLns, s)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		httpLns = append(httpLns, l)
		peers = append(peers, binder.PeerAddr{ID: fmt.Sprintf("n%d", i+1), RaftAddr: s.Addr().String()})
	}
	var nodes []*testNode
	for i := 0; i < n; i++ {
		peer := httpapi.NewPeerClient()
		node, err := binder.New(binder.Config{
			ID: peers[i].ID, HTTPAddr: httpLns[i].Addr().String(), DataDir: t.TempDir(), Peers: peers,
			Stream: raftLns[i], Peer: peer, ProbeTimeout: 300 * time.Millisecond,
			Logger: hclog.New(&hclog.LoggerOptions{Name: peers[i].ID, Level: hclog.Warn}),
		})
		require.NoError(t, err)
		var api http.Handler = httpapi.NewServer(node, nil)
		if wrap != nil {
			api = wrap(i, api)
		}
		srv := &http.Server{Handler: api, ReadHeaderTimeout: 5 * time.Second}
		go func(l net.Listener) { _ = srv.Serve(l) }(httpLns[i])
		tn := &testNode{node: node, srv: srv, peer: peer, addr: httpLns[i].Addr().String()}
		nodes = append(nodes, tn)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = node.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done; tn.close() })
	}
	awaitLeader(t, nodes)
	return nodes
}

func awaitLeader(t *testing.T, nodes []*testNode) int {
	t.Helper()
	leader := -1
	await(t, 20*time.Second, "a leader known to all", func() bool {
		leader = -1
		for i, n := range nodes {
			if n == nil {
				continue
			}
			st := n.node.Status()
			// Until a node has applied the cluster id, the leader's
			// internal endpoints refuse its forwards.
			if st.Leader == "" || !st.ClusterIDKnown {
				return false
			}
			if st.State == "leader" {
				leader = i
			}
			_, members := n.node.Cluster(context.Background())
			for _, m := range members {
				if m.HTTPAddr == "" {
					return false
				}
			}
		}
		return leader >= 0
	})
	return leader
}

func await(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func follower(t *testing.T, nodes []*testNode) *binder.Node {
	for _, n := range nodes {
		if n != nil && !n.node.IsLeader() {
			return n.node
		}
	}
	t.Fatal("no follower")
	return nil
}

func TestWriteThroughFollowerIsReadBackThere(t *testing.T) {
	nodes := startNodes(t, 3)
	f := follower(t, nodes)
	ctx := context.Background()
	id, idx, err := f.Register(ctx, binder.Registration{Type: "echo", Address: "127.0.0.1", Port: 1})
	require.NoError(t, err)
	assert.Equal(t, "echo-127.0.0.1-1", id)
	assert.NotZero(t, idx)
	// A forwarded write is visible at once on the node that took it.
	inst, err := f.Lookup("echo")
	require.NoError(t, err)
	assert.Equal(t, idx, inst.Index)

	_, err = f.Deregister(ctx, "nope", "", nil)
	assert.ErrorIs(t, err, binder.ErrUnknownID)
	_, _, err = f.Register(ctx, binder.Registration{Type: "Bad", Address: "127.0.0.1", Port: 1})
	assert.ErrorIs(t, err, binder.ErrInvalid)
}

func TestRoundRobinPerNode(t *testing.T) {
	nodes := startNodes(t, 1)
	n := nodes[0].node
	for p := 1; p <= 3; p++ {
		_, _, err := n.Register(context.Background(), binder.Registration{Type: "echo", Address: "127.0.0.1", Port: p})
		require.NoError(t, err)
	}
	counts := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := 0; g < 10; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				inst, err := n.Lookup("echo")
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				counts[inst.Port]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, map[int]int{1: 100, 2: 100, 3: 100}, counts, "concurrent lookups still share out evenly")
	_, err := n.Lookup("nope")
	assert.ErrorIs(t, err, binder.ErrUnknownService)
}

func TestWaitersWakeOnTheirType(t *testing.T) {
	nodes := startNodes(t, 1)
	n := nodes[0].node
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := make(chan error, 1)
	go func() {
		inst, err := n.LookupWait(ctx, "late")
		if err == nil && inst.Type != "late" {
			err = fmt.Errorf("got %s", inst.Type)
		}
		got <- err
	}()
	_, idx := n.ServicesOf("late")
	blocked := make(chan bool, 1)
	go func() { blocked <- n.WaitIndex(ctx, "late", idx) }()

	// A change to another type wakes neither.
	_, _, err := n.Register(ctx, binder.Registration{Type: "other", Address: "127.0.0.1", Port: 1})
	require.NoError(t, err)
	select {
	case err := <-got:
		t.Fatalf("lookup of 'late' returned after a change to 'other': %v", err)
	default:
	}
	_, _, err = n.Register(ctx, binder.Registration{Type: "late", Address: "127.0.0.1", Port: 2})
	require.NoError(t, err)
	require.NoError(t, <-got)
	assert.True(t, <-blocked)
}

func TestReportVerifiesBeforeRemoving(t *testing.T) {
	nodes := startNodes(t, 3)
	f := follower(t, nodes)
	ctx := context.Background()
	alive, _, err := f.Register(ctx, binder.Registration{Type: "echo", Address: "127.0.0.1", Port: livePort(t)})
	require.NoError(t, err)
	dead, _, err := f.Register(ctx, binder.Registration{Type: "echo", Address: "127.0.0.1", Port: deadPort(t)})
	require.NoError(t, err)

	v, _, err := f.Report(ctx, alive)
	require.NoError(t, err)
	assert.Equal(t, binder.VerdictAlive, v)

	// Concurrent reports of one id share one verification and agree.
	var wg sync.WaitGroup
	verdicts := make([]binder.Verdict, 5)
	for i := range verdicts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			verdicts[i], _, _ = f.Report(ctx, dead)
		}()
	}
	wg.Wait()
	for _, v := range verdicts {
		assert.Equal(t, binder.VerdictRemoved, v)
	}
	for _, n := range nodes {
		await(t, 10*time.Second, "removal reaches every node", func() bool {
			list, _ := n.node.ServicesOf("echo")
			return len(list) == 1 && list[0].ID == alive
		})
	}
	_, _, err = f.Report(ctx, "never-there")
	assert.ErrorIs(t, err, binder.ErrUnknownID)
}

func TestLeaderCloseHandsOver(t *testing.T) {
	nodes := startNodes(t, 3)
	old := awaitLeader(t, nodes)
	oldID := nodes[old].node.ID()
	nodes[old].close()
	nodes[old] = nil
	var rest []*testNode
	for _, n := range nodes {
		if n != nil {
			rest = append(rest, n)
		}
	}
	newLeader := awaitLeader(t, rest)
	assert.NotEqual(t, oldID, rest[newLeader].node.ID())
	_, _, err := rest[0].node.Register(context.Background(), binder.Registration{Type: "echo", Address: "127.0.0.1", Port: 1})
	require.NoError(t, err)
	assert.False(t, errors.Is(err, binder.ErrNoLeader))
}

// When a probe fails and none of the other instances answer either, the
// binder is the likelier one cut off: it holds the removal.
func TestReportHeldWhenNothingAnswers(t *testing.T) {
	nodes := startNodes(t, 1)
	n := nodes[0].node
	ctx := context.Background()
	var ids []string
	for _, typ := range []string{"a", "b", "c", "d"} {
		id, _, err := n.Register(ctx, binder.Registration{Type: typ, Address: "127.0.0.1", Port: deadPort(t)})
		require.NoError(t, err)
		ids = append(ids, id)
	}
	v, _, err := n.Report(ctx, ids[0])
	require.NoError(t, err)
	assert.Equal(t, binder.VerdictUnknown, v, "every instance is unreachable: removal held")
	list, _ := n.ServicesOf("a")
	assert.Len(t, list, 1, "the instance was kept")
	assert.True(t, n.Status().VerificationHold)

	// One other instance answers: the failure is believed.
	_, _, err = n.Register(ctx, binder.Registration{Type: "e", Address: "127.0.0.1", Port: livePort(t)})
	require.NoError(t, err)
	v, _, err = n.Report(ctx, ids[0])
	require.NoError(t, err)
	assert.Equal(t, binder.VerdictRemoved, v)
}

// Concurrent writes through a follower travel to the leader in batches and
// each gets its own answer.
func TestConcurrentWritesThroughFollowerAreBatched(t *testing.T) {
	nodes := startNodes(t, 3)
	f := follower(t, nodes)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 100)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = f.Register(ctx, binder.Registration{Type: "burst", Address: "127.0.0.1", Port: 1000 + i})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "write %d", i)
	}
	list, _ := f.ServicesOf("burst")
	assert.Len(t, list, 100)
	_, err := f.Deregister(ctx, "never", "", nil)
	assert.ErrorIs(t, err, binder.ErrUnknownID, "a refusal inside a batch keeps its meaning")
}

// livePort is a loopback port whose server accepts and closes connections,
// as a probe needs; deadPort one where nothing listens.
func livePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func deadPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}
