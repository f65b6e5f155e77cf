package binder_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/httpapi"
	"github.com/lieur/lieur/transport/raftnet"
	"github.com/lieur/lieur/transport/wire"
)

// errPartitioned is what a dial across a partition fails with.
var errPartitioned = errors.New("partitioned")

// partitionLayer is a raft.StreamLayer over real TCP that can cut this node
// off from chosen peers. Raft connections are opened by the sender
// (AppendEntries, RequestVote and InstallSnapshot all dial their target), so
// refusing dials to a blocked address and closing the connections already
// dialed to it stops everything this node sends there. The peer's own
// layer blocks this node in turn; Accept cannot tell who is calling
// (ephemeral ports), and need not.
type partitionLayer struct {
	inner *raftnet.TCPStreamLayer

	mu      sync.Mutex
	blocked map[raft.ServerAddress]bool
	dialed  map[*dialedConn]struct{}
	closed  bool
}

var _ raft.StreamLayer = (*partitionLayer)(nil)

func newPartitionLayer(inner *raftnet.TCPStreamLayer) *partitionLayer {
	return &partitionLayer{inner: inner, blocked: map[raft.ServerAddress]bool{}, dialed: map[*dialedConn]struct{}{}}
}

func (p *partitionLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if err := p.refuse(addr); err != nil {
		return nil, err
	}
	c, err := p.inner.Dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// The partition may have started while dialing.
	if p.closed || p.blocked[addr] {
		c.Close()
		return nil, fmt.Errorf("dial %s: %w", addr, errPartitioned)
	}
	dc := &dialedConn{Conn: c, layer: p, addr: addr}
	p.dialed[dc] = struct{}{}
	return dc, nil
}

func (p *partitionLayer) refuse(addr raft.ServerAddress) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return net.ErrClosed
	case p.blocked[addr]:
		return fmt.Errorf("dial %s: %w", addr, errPartitioned)
	}
	return nil
}

func (p *partitionLayer) Accept() (net.Conn, error) { return p.inner.Accept() }
func (p *partitionLayer) Addr() net.Addr            { return p.inner.Addr() }

// Close closes the listener, the connections it accepted and the ones this
// layer dialed.
func (p *partitionLayer) Close() error {
	p.mu.Lock()
	p.closed = true
	conns := p.takeDialed(func(*dialedConn) bool { return true })
	p.mu.Unlock()
	for _, c := range conns {
		c.Conn.Close()
	}
	return p.inner.Close()
}

// block refuses dials to addr from now on and closes the connections
// already dialed to it.
func (p *partitionLayer) block(addr raft.ServerAddress) {
	p.mu.Lock()
	p.blocked[addr] = true
	conns := p.takeDialed(func(c *dialedConn) bool { return c.addr == addr })
	p.mu.Unlock()
	for _, c := range conns {
		c.Conn.Close()
	}
}

func (p *partitionLayer) unblockAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.blocked)
}

// takeDialed removes the dialed connections that match from the set and
// returns them. p.mu must be held.
func (p *partitionLayer) takeDialed(match func(*dialedConn) bool) []*dialedConn {
	var out []*dialedConn
	for c := range p.dialed {
		if match(c) {
			delete(p.dialed, c)
			out = append(out, c)
		}
	}
	return out
}

type dialedConn struct {
	net.Conn
	layer *partitionLayer
	addr  raft.ServerAddress
}

func (c *dialedConn) Close() error {
	c.layer.mu.Lock()
	delete(c.layer.dialed, c)
	c.layer.mu.Unlock()
	return c.Conn.Close()
}

// partitionCluster is an in-process cluster whose Raft traffic can be cut.
// The HTTP API between nodes (write forwarding, read index) is not cut: a
// node cut off from the leader forgets it after its heartbeat timeout, so
// it has no one to forward to.
type partitionCluster struct {
	t      *testing.T
	nodes  []*testNode
	layers []*partitionLayer
	client *http.Client
}

// startPartitionableNodes starts n binders that bootstrap together, each
// with a partitionLayer under its Raft transport and its HTTP API served on
// loopback, and waits until they all know one leader and have caught up.
func startPartitionableNodes(t *testing.T, n int, tune ...func(*binder.Config)) *partitionCluster {
	t.Helper()
	// Registered first, so it runs last, once every node has stopped
	// logging.
	logs := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node logs:\n%s", logs.String())
		}
	})
	tr := &http.Transport{DisableKeepAlives: true}
	c := &partitionCluster{t: t, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	t.Cleanup(tr.CloseIdleConnections)

	var httpLns []net.Listener
	var peers []binder.PeerAddr
	for i := 0; i < n; i++ {
		s, err := raftnet.Listen("127.0.0.1:0", "")
		require.NoError(t, err)
		layer := newPartitionLayer(s)
		t.Cleanup(func() { _ = layer.Close() })
		c.layers = append(c.layers, layer)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { _ = l.Close() })
		httpLns = append(httpLns, l)
		peers = append(peers, binder.PeerAddr{ID: fmt.Sprintf("n%d", i+1), RaftAddr: s.Addr().String()})
	}
	for i := 0; i < n; i++ {
		peer := httpapi.NewPeerClient()
		cfg := binder.Config{
			ID: peers[i].ID, HTTPAddr: httpLns[i].Addr().String(), DataDir: t.TempDir(), Peers: peers,
			Stream: c.layers[i], Peer: peer, ProbeTimeout: 300 * time.Millisecond,
			WriteHold: time.Second, MaxStaleness: time.Second,
			Logger: hclog.New(&hclog.LoggerOptions{Name: peers[i].ID, Level: hclog.Info, Output: logs}),
		}
		for _, f := range tune {
			f(&cfg)
		}
		node, err := binder.New(cfg)
		if err != nil {
			peer.Close()
		}
		require.NoError(t, err)
		srv := &http.Server{Handler: httpapi.NewServer(node, nil), ReadHeaderTimeout: 5 * time.Second}
		served := make(chan struct{})
		go func(l net.Listener) { _ = srv.Serve(l); close(served) }(httpLns[i])
		tn := &testNode{node: node, srv: srv, peer: peer, addr: httpLns[i].Addr().String()}
		c.nodes = append(c.nodes, tn)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = node.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done; tn.close(); <-served })
	}
	awaitLeader(t, c.nodes)
	// The cluster id too: a node that has not applied it yet cannot call
	// the leader's internal endpoints, and a partition could keep it from
	// it for a while.
	await(t, 20*time.Second, "every node caught up and knows the cluster id", func() bool {
		for _, tn := range c.nodes {
			if st := tn.node.Status(); !st.CaughtUp || !st.ClusterIDKnown {
				return false
			}
		}
		return true
	})
	return c
}

// isolate cuts node i off from every other node, both ways.
func (c *partitionCluster) isolate(i int) {
	for j := range c.layers {
		if j == i {
			continue
		}
		c.layers[i].block(raft.ServerAddress(c.layers[j].Addr().String()))
		c.layers[j].block(raft.ServerAddress(c.layers[i].Addr().String()))
	}
}

// heal restores every connection.
func (c *partitionCluster) heal() {
	for _, l := range c.layers {
		l.unblockAll()
	}
}

func (c *partitionCluster) leaderIndex() int {
	for i, tn := range c.nodes {
		if tn.node.IsLeader() {
			return i
		}
	}
	return -1
}

// awaitConverged waits until the nodes listed agree: exactly one of them
// leads, all name it as leader, all serve default reads, and all hold the
// same table at the same applied index.
func (c *partitionCluster) awaitConverged(idx ...int) {
	c.t.Helper()
	await(c.t, 20*time.Second, fmt.Sprintf("nodes %v converged", idx), func() bool {
		var leaders []string
		hash := ""
		var applied uint64
		for k, i := range idx {
			n := c.nodes[i].node
			st := n.Status()
			if st.State == "leader" {
				leaders = append(leaders, st.ID)
			}
			if k == 0 {
				hash, applied = st.TableHash, st.AppliedIndex
			}
			// The same table is not enough: a node that has not yet
			// applied a registration and its removal holds the same table
			// as one that has, and applies the pair later.
			if st.TableHash != hash || st.AppliedIndex != applied || st.Leader == "" || n.ReadAllowed() != nil {
				return false
			}
		}
		if len(leaders) != 1 {
			return false
		}
		for _, i := range idx {
			if c.nodes[i].node.Status().Leader != leaders[0] {
				return false
			}
		}
		return true
	})
}

// httpDo sends a request to node i's API and returns the status and body.
func (c *partitionCluster) httpDo(i int, method, path string, body any) (int, []byte) {
	c.t.Helper()
	status, data, err := c.send(i, method, path, body)
	require.NoError(c.t, err)
	return status, data
}

// send is httpDo for other goroutines than the test's.
func (c *partitionCluster) send(i int, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+c.nodes[i].addr+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

func errorCode(t *testing.T, body []byte) string {
	t.Helper()
	var e wire.Error
	require.NoError(t, json.Unmarshal(body, &e), "error body %s", body)
	return e.Code
}

// ports lists the ports of the instances of typ node i holds, sorted: a
// stale read, from local memory.
func (c *partitionCluster) ports(i int, typ string) []int {
	list, _ := c.nodes[i].node.ServicesOf(typ)
	var out []int
	for _, inst := range list {
		out = append(out, inst.Port)
	}
	slices.Sort(out)
	return out
}

func echo(port int) binder.Registration {
	return binder.Registration{Type: "echo", Address: "127.0.0.1", Port: port}
}

// assertCutOff checks what a node cut off from the leader, and aware of it,
// serves: it refuses writes with ErrNoLeader (503 over HTTP), default and
// consistent reads fail, and stale reads still answer from its own table,
// which holds exactly wantPorts for "echo".
func (c *partitionCluster) assertCutOff(i int, refusedPort int, wantPorts []int) {
	t := c.t
	t.Helper()
	n := c.nodes[i].node
	ctx := context.Background()

	// The calls below each wait out the write hold; they run side by side
	// to keep the partition (and raft's retry backoff after it) short.
	var wg sync.WaitGroup
	var regErr, readErr, postErr, getErr error
	var postStatus, getStatus int
	var postBody, getBody []byte
	wg.Add(4)
	go func() { defer wg.Done(); _, _, regErr = n.Register(ctx, echo(refusedPort)) }()
	go func() { defer wg.Done(); readErr = n.ConsistentRead(ctx) }()
	go func() {
		defer wg.Done()
		postStatus, postBody, postErr = c.send(i, http.MethodPost, "/v1/services",
			wire.RegisterRequest{Type: "echo", Address: "127.0.0.1", Port: refusedPort + 1})
	}()
	go func() {
		defer wg.Done()
		getStatus, getBody, getErr = c.send(i, http.MethodGet, "/v1/lookup/echo?consistent=true", nil)
	}()
	wg.Wait()

	assert.ErrorIs(t, regErr, binder.ErrNoLeader, "write on a node cut off from the leader")
	assert.ErrorIs(t, readErr, binder.ErrNoLeader, "consistent read on a node cut off from the leader")
	require.NoError(t, postErr)
	assert.Equal(t, http.StatusServiceUnavailable, postStatus, "POST /v1/services: %s", postBody)
	assert.Equal(t, wire.CodeNoLeader, errorCode(t, postBody))
	require.NoError(t, getErr)
	assert.Equal(t, http.StatusServiceUnavailable, getStatus, "consistent lookup: %s", getBody)
	assert.Equal(t, wire.CodeNoLeader, errorCode(t, getBody))

	// Default reads go on until MaxStaleness has passed since the last
	// contact with a leader (see TestCutOffFollowerServesUntilMaxStaleness).
	await(t, 10*time.Second, "the cut-off node to refuse default reads", func() bool {
		return errors.Is(n.ReadAllowed(), binder.ErrStale)
	})
	status, body := c.httpDo(i, http.MethodGet, "/v1/lookup/echo", nil)
	assert.Equal(t, http.StatusServiceUnavailable, status, "default lookup: %s", body)
	assert.Equal(t, wire.CodeStale, errorCode(t, body))
	status, body = c.httpDo(i, http.MethodGet, "/v1/services/echo", nil)
	assert.Equal(t, http.StatusServiceUnavailable, status, "default services: %s", body)

	// Stale reads still answer, from what the node had.
	assert.Equal(t, wantPorts, c.ports(i, "echo"))
	inst, err := n.Lookup("echo")
	if assert.NoError(t, err) {
		assert.Contains(t, wantPorts, inst.Port)
	}
	status, body = c.httpDo(i, http.MethodGet, "/v1/lookup/echo?stale=true", nil)
	if assert.Equal(t, http.StatusOK, status, "stale lookup: %s", body) {
		var got wire.Instance
		require.NoError(t, json.Unmarshal(body, &got))
		assert.Contains(t, wantPorts, got.Port)
	}
	status, body = c.httpDo(i, http.MethodGet, "/v1/services/echo?stale=true", nil)
	if assert.Equal(t, http.StatusOK, status, "stale services: %s", body) {
		var got wire.ServicesResponse
		require.NoError(t, json.Unmarshal(body, &got))
		assert.Len(t, got.Services, len(wantPorts))
	}
}

// A follower cut off from the other two stops accepting writes and default
// reads once it notices, keeps serving stale reads of its old table, and
// catches up when the partition heals; the majority carries on.
func TestPartitionedFollowerRefusesWritesAndConverges(t *testing.T) {
	c := startPartitionableNodes(t, 3)
	ctx := context.Background()
	leader := c.leaderIndex()
	require.GreaterOrEqual(t, leader, 0)
	minority := (leader + 1) % 3
	other := (leader + 2) % 3

	_, _, err := c.nodes[leader].node.Register(ctx, echo(1))
	require.NoError(t, err)
	c.awaitConverged(0, 1, 2)
	before := c.nodes[minority].node.Status().TableHash

	c.isolate(minority)

	// The majority keeps its leader and takes writes, also through its
	// follower.
	_, _, err = c.nodes[other].node.Register(ctx, echo(2))
	require.NoError(t, err, "write through the majority's follower")
	assert.Equal(t, []int{1, 2}, c.ports(other, "echo"))

	await(t, 10*time.Second, "the minority to lose its leader", func() bool {
		return c.nodes[minority].node.Status().Leader == ""
	})
	assert.NotEqual(t, "leader", c.nodes[minority].node.Status().State)
	c.assertCutOff(minority, 3, []int{1})
	assert.Equal(t, before, c.nodes[minority].node.Status().TableHash, "the minority's table did not change")

	// The majority is unaffected throughout.
	assert.True(t, c.nodes[leader].node.IsLeader(), "the majority's leader kept leading")
	assert.NoError(t, c.nodes[other].node.ReadAllowed())
	assert.NoError(t, c.nodes[other].node.ConsistentRead(ctx))

	c.heal()
	c.awaitConverged(0, 1, 2)
	assert.True(t, c.nodes[leader].node.IsLeader(), "the minority did not take over")
	for i := range c.nodes {
		assert.Equal(t, []int{1, 2}, c.ports(i, "echo"), "node %d after healing: the majority's write, none of the refused ones", i)
	}
	assert.NoError(t, c.nodes[minority].node.ReadAllowed())
	status, body := c.httpDo(minority, http.MethodGet, "/v1/lookup/echo", nil)
	assert.Equal(t, http.StatusOK, status, "default lookup after healing: %s", body)
	assert.NoError(t, c.nodes[minority].node.ConsistentRead(ctx))
}

// A leader cut off from both followers steps down and refuses writes and
// default reads; the followers elect a new leader and take writes; after
// healing the three agree, with one leader, and the write the old leader
// could not commit is gone.
func TestPartitionedLeaderStepsDownAndConverges(t *testing.T) {
	c := startPartitionableNodes(t, 3)
	ctx := context.Background()
	old := c.leaderIndex()
	require.GreaterOrEqual(t, old, 0)
	oldID := c.nodes[old].node.ID()
	a, b := (old+1)%3, (old+2)%3

	_, _, err := c.nodes[old].node.Register(ctx, echo(1))
	require.NoError(t, err)
	c.awaitConverged(0, 1, 2)

	c.isolate(old)

	// A write sent to the old leader right away may reach its log, but it
	// cannot commit there: it fails, and never shows up anywhere.
	_, _, err = c.nodes[old].node.Register(ctx, echo(9))
	// Whether it reached the log decides what the caller may be promised:
	// not applied (no leader) or maybe applied (outcome unknown); never
	// success.
	assert.True(t, errors.Is(err, binder.ErrNoLeader) || errors.Is(err, binder.ErrOutcomeUnknown),
		"write on a leader cut off from its followers: %v", err)

	await(t, 10*time.Second, "the old leader to step down", func() bool {
		return c.nodes[old].node.Status().State != "leader"
	})
	majority := []*testNode{c.nodes[a], c.nodes[b]}
	newLeader := majority[awaitLeader(t, majority)].node
	assert.NotEqual(t, oldID, newLeader.ID())
	_, _, err = c.nodes[a].node.Register(ctx, echo(2))
	require.NoError(t, err, "write through the majority")
	_, _, err = c.nodes[b].node.Register(ctx, echo(3))
	require.NoError(t, err, "write through the majority")

	await(t, 10*time.Second, "the old leader to forget leadership", func() bool {
		return c.nodes[old].node.Status().Leader == ""
	})
	c.assertCutOff(old, 4, []int{1})

	c.heal()
	c.awaitConverged(0, 1, 2)
	var leaders []string
	for i := range c.nodes {
		if st := c.nodes[i].node.Status(); st.State == "leader" {
			leaders = append(leaders, st.ID)
		}
		assert.Equal(t, []int{1, 2, 3}, c.ports(i, "echo"), "node %d after healing: the majority's writes, none of the refused ones", i)
	}
	assert.Len(t, leaders, 1)
	assert.NoError(t, c.nodes[old].node.ReadAllowed())
	status, body := c.httpDo(old, http.MethodGet, "/v1/lookup/echo", nil)
	assert.Equal(t, http.StatusOK, status, "default lookup after healing: %s", body)
	_, _, err = c.nodes[old].node.Register(ctx, echo(7))
	assert.NoError(t, err, "the old leader takes writes again")
}

// lockedBuffer collects the nodes' logs, shown when a test fails.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
