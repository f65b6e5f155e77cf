package binder_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
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
)

// A leader frozen for a while (SIGSTOP, a long GC or VM pause) wakes up
// with its followers' answers to its last heartbeats and appends waiting in
// its sockets, although the followers have meanwhile elected a new leader
// and acknowledged writes the frozen one never saw. hashicorp/raft counts
// such an answer, sent before the election, as a vote for a VerifyLeader
// registered after it, so VerifyLeader alone succeeds on the deposed
// leader and a read index taken there misses the acknowledged write.
//
// The test builds that interleaving deterministically, freezing only the
// old leader's Raft connections (its process keeps running, as one that
// just woke up does):
//
//  1. n1 leads. Its reads are frozen (answers arrive but are not handed to
//     raft) until each follower's answer is held, then its writes too; the
//     test waits until the followers answered every request n1 sent, all
//     at n1's term, so that nothing but those answers waits for n1.
//  2. n2 is made to start an election (as raft's leadership transfer does)
//     and wins it with n3's vote; a write through it is acknowledged.
//  3. ReadIndex is called on n1, which still believes it leads (its lease
//     outlasts the test), and the test waits until its VerifyLeader is
//     registered with n1's replication goroutines.
//  4. n1 wakes in stages: first the answers waiting on the connections it
//     dialled are handed over, then, once ReadIndex returned or appended
//     its barrier, everything else (n2's vote request and heartbeats; the
//     connections n1 dialled are reset, see freezeLayer.wake).
//
// The read index must then fail, or cover the acknowledged write.
func TestFrozenLeaderReadIndexCoversNewerLeadersWrites(t *testing.T) {
	nodes, layers := startFreezableNodes(t)
	old, next := nodes[0].node, nodes[1].node
	frozen := layers[0]
	// Whatever happens below, n1 is awake when the nodes close: raft's
	// shutdown waits for goroutines blocked on a frozen connection.
	// Registered after the nodes' cleanups, this runs before them.
	t.Cleanup(frozen.wake)
	ctx := context.Background()

	// 1. Freeze n1. Answers to the heartbeats and appends (sent every
	// CommitTimeout) it keeps sending arrive and are held.
	frozen.freezeReads()
	await(t, 5*time.Second, "an answer from each follower held on n1", func() bool {
		return frozen.held(layers[1].Addr()) > 0 && frozen.held(layers[2].Addr()) > 0
	})
	frozen.freezeWrites()
	// A request already on its way when the writes froze must be answered
	// before the election: answered after it, it would carry the new term
	// and make n1 step down on waking, whatever the order it reads in.
	await(t, 5*time.Second, "every request n1 sent answered", func() bool {
		return frozen.unanswered(layers[1:]) == 0
	})

	// 2. A new leader, and a write it acknowledges.
	startElection(t, "n2", layers[1].Addr().String())
	await(t, 5*time.Second, "n2 to lead", next.IsLeader)
	id, regIdx, err := next.Register(ctx, echo(1))
	require.NoError(t, err, "write through the new leader")
	require.True(t, old.IsLeader(), "precondition: frozen n1 still believes it leads (its lease must outlast the setup)")

	// 3. A read index on n1, taken after the write was acknowledged.
	type result struct {
		idx uint64
		err error
		ids []string // n1's "echo" instances when ReadIndex returned
	}
	res := make(chan result, 1)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	go func() {
		idx, err := old.ReadIndex(rctx)
		r := result{idx: idx, err: err}
		if err == nil {
			list, _ := old.ServicesOf("echo")
			for _, inst := range list {
				r.ids = append(r.ids, inst.ID)
			}
		}
		res <- r
	}()
	// The held answers must be handed over only once the verification is
	// registered: handed over before, they would vote for nothing, and the
	// verification would wait for later answers, which carry the new term.
	await(t, 5*time.Second, "n1's leadership check registered", func() bool {
		return verificationRegistered(t.Name())
	})

	// 4. Wake n1: first its followers' old answers, writes still frozen, so
	// that no answer carrying the new term can reach it yet.
	lastIndex := old.Status().LastLogIndex
	frozen.thawDialledReads()
	var r result
	returned := false
	// The fixed ReadIndex goes on to a barrier, which needs the writes: it
	// shows in n1's log. The old one returns.
	await(t, 5*time.Second, "ReadIndex to return or append its barrier", func() bool {
		select {
		case r = <-res:
			returned = true
			return true
		default:
			return old.Status().LastLogIndex > lastIndex
		}
	})
	frozen.wake()
	if !returned {
		select {
		case r = <-res:
		case <-time.After(10 * time.Second):
			t.Fatal("ReadIndex on the woken leader did not return")
		}
	}

	if r.err != nil {
		assert.True(t, errors.Is(r.err, binder.ErrNotLeader) || errors.Is(r.err, binder.ErrNoLeader),
			"ReadIndex on the deposed leader: %v", r.err)
	} else {
		assert.GreaterOrEqual(t, r.idx, regIdx,
			"stale read index on the deposed leader: %d, below the index %d of a write the new leader acknowledged before the call", r.idx, regIdx)
		assert.Contains(t, r.ids, id, "the deposed leader's table when its ReadIndex succeeded lacks the acknowledged write")
	}

	// Awake, n1 follows n2, and a consistent read there sees the write.
	require.NoError(t, old.ConsistentRead(ctx), "consistent read on the deposed leader once awake")
	list, _ := old.ServicesOf("echo")
	require.Len(t, list, 1)
	assert.Equal(t, id, list[0].ID)
	assert.False(t, old.IsLeader())
}

// startFreezableNodes starts three binders that bootstrap together, each
// with a freezeLayer under its Raft transport, makes n1 the leader and
// waits until all have caught up. Raft timeouts are long (3 s): n1's lease
// must outlast the time it is frozen, and no follower may start an
// election of its own meanwhile; elections are started by the test
// (startElection) instead of waiting for the timeouts.
func startFreezableNodes(t *testing.T) ([]*testNode, []*freezeLayer) {
	t.Helper()
	logs := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node logs:\n%s", logs.String())
		}
	})
	var layers []*freezeLayer
	var httpLns []net.Listener
	var peers []binder.PeerAddr
	for i := 0; i < 3; i++ {
		s, err := raftnet.Listen("127.0.0.1:0", "")
		require.NoError(t, err)
		layer := newFreezeLayer(s)
		t.Cleanup(func() { _ = layer.Close() })
		layers = append(layers, layer)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { _ = l.Close() })
		httpLns = append(httpLns, l)
		peers = append(peers, binder.PeerAddr{ID: fmt.Sprintf("n%d", i+1), RaftAddr: s.Addr().String()})
	}
	var nodes []*testNode
	for i := 0; i < 3; i++ {
		peer := httpapi.NewPeerClient()
		node, err := binder.New(binder.Config{
			ID: peers[i].ID, HTTPAddr: httpLns[i].Addr().String(), DataDir: t.TempDir(), Peers: peers,
			Stream: layers[i], Peer: peer, ProbeTimeout: 300 * time.Millisecond,
			HeartbeatTimeout: 3 * time.Second, ElectionTimeout: 3 * time.Second, LeaderLeaseTimeout: 3 * time.Second,
			Logger: hclog.New(&hclog.LoggerOptions{Name: peers[i].ID, Level: hclog.Info, Output: logs}),
		})
		if err != nil {
			peer.Close()
		}
		require.NoError(t, err)
		srv := &http.Server{Handler: httpapi.NewServer(node, nil), ReadHeaderTimeout: 5 * time.Second}
		served := make(chan struct{})
		go func(l net.Listener) { _ = srv.Serve(l); close(served) }(httpLns[i])
		tn := &testNode{node: node, srv: srv, peer: peer, addr: httpLns[i].Addr().String()}
		nodes = append(nodes, tn)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = node.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done; tn.close(); <-served })
	}
	// With 3 s timeouts nobody would campaign for seconds.
	startElection(t, "n1", peers[0].RaftAddr)
	require.Equal(t, 0, awaitLeader(t, nodes), "n1 leads")
	await(t, 20*time.Second, "every node caught up", func() bool {
		for _, tn := range nodes {
			if !tn.node.CaughtUp() {
				return false
			}
		}
		return true
	})
	// Ready: its first barrier applied (ReadIndex waits for it).
	_, err := nodes[0].node.ReadIndex(context.Background())
	require.NoError(t, err)
	return nodes, layers
}

// startElection sends raft's TimeoutNow to the server id at addr, as a
// leadership transfer does: it becomes a candidate at once, skipping the
// pre-vote, and the others grant their votes even while they still know a
// leader.
func startElection(t *testing.T, id, addr string) {
	t.Helper()
	s, err := raftnet.Listen("127.0.0.1:0", "")
	require.NoError(t, err)
	// No pool: the connection is closed after the call.
	trans := raft.NewNetworkTransport(s, 0, 5*time.Second, io.Discard)
	defer trans.Close()
	req := raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{
		ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("test"), Addr: []byte(s.Addr().String()),
	}}
	var resp raft.TimeoutNowResponse
	require.NoError(t, trans.TimeoutNow(raft.ServerID(id), raft.ServerAddress(addr), &req, &resp), "TimeoutNow to %s", id)
}

// verificationRegistered reports whether ReadIndex, called by the test
// named test, waits for a raft future (in the goroutine that called it or
// in one that goroutine started) while every raft leader loop of the
// process is parked in its select. Such a future (VerifyLeader's, the
// first one a read index waits for) is handed to the leader loop over a
// buffered channel before it is waited for; a leader loop parked in its
// select has drained the channel since (a select with a ready case does
// not park, and a send to a parked one wakes it), so it has registered
// the verification with its replication goroutines.
func verificationRegistered(test string) bool {
	gs := goroutines()
	family := map[int]bool{}
	for _, g := range gs {
		if strings.Contains(g.body, "binder.(*Node).ReadIndex(") && strings.Contains(g.body, test) {
			family[g.id] = true
		}
	}
	for grew := true; grew; {
		grew = false
		for _, g := range gs {
			if !family[g.id] && family[g.parent] {
				family[g.id], grew = true, true
			}
		}
	}
	waiting, loops := false, 0
	for _, g := range gs {
		parked := g.state == "select" || g.state == "chan receive"
		if family[g.id] && parked && strings.Contains(g.body, "raft.(*deferError).Error(") {
			waiting = true
		}
		if strings.Contains(g.body, "raft.(*Raft).leaderLoop(") {
			if g.state != "select" || !strings.Contains(firstFrame(g.body), "raft.(*Raft).leaderLoop(") {
				return false
			}
			loops++
		}
	}
	return waiting && loops > 0
}

// goroutine is one goroutine of a stack dump.
type goroutine struct {
	id, parent int    // parent: the goroutine that started it
	state      string // "select", "chan receive", "running"...
	body       string // its frames
}

// goroutines parses a dump of every goroutine's stack.
func goroutines() []goroutine {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var gs []goroutine
	for _, block := range strings.Split(string(buf), "\n\n") {
		header, body, _ := strings.Cut(block, "\n")
		var g goroutine
		if _, err := fmt.Sscanf(header, "goroutine %d [", &g.id); err != nil {
			continue
		}
		if _, s, ok := strings.Cut(header, "["); ok {
			g.state, _, _ = strings.Cut(s, "]")
			g.state, _, _ = strings.Cut(g.state, ",")
		}
		if i := strings.LastIndex(body, " in goroutine "); i >= 0 {
			_, _ = fmt.Sscanf(body[i:], " in goroutine %d", &g.parent)
		}
		g.body = body
		gs = append(gs, g)
	}
	return gs
}

// firstFrame is the first function of a goroutine's stack outside the
// runtime.
func firstFrame(body string) string {
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "\t") || strings.HasPrefix(line, "runtime.") || strings.HasPrefix(line, "internal/") {
			continue
		}
		return line
	}
	return ""
}

// freezeLayer is a raft.StreamLayer over real TCP whose connections can be
// frozen the way a stopped process sees its network: data keeps arriving
// in its sockets but is not handed over, and nothing is written. Reads and
// writes freeze separately, and reads separately on the connections this
// node dialled (the answers to its requests) and on those it accepted
// (other nodes' requests), so that a test can wake the node in a chosen
// order. It counts the writes on each connection: raft's transport
// flushes each request and each answer in one write, so a request is
// answered when the accepting side has written as often as the dialling
// side.
type freezeLayer struct {
	inner     *raftnet.TCPStreamLayer
	closed    chan struct{}
	closeOnce sync.Once

	mu                                  sync.Mutex
	dialledReads, acceptedReads, writes gate
	dialled                             []*freezeConn
	accepted                            map[string]*freezeConn // by the dialling side's address
	heldFrom                            map[string]int         // reads held on connections dialled to an address
}

var _ raft.StreamLayer = (*freezeLayer)(nil)

func newFreezeLayer(inner *raftnet.TCPStreamLayer) *freezeLayer {
	return &freezeLayer{inner: inner, closed: make(chan struct{}), accepted: map[string]*freezeConn{}, heldFrom: map[string]int{}}
}

// gate is frozen or not; thawed is closed when it thaws. Guarded by
// freezeLayer.mu.
type gate struct {
	frozen bool
	thawed chan struct{}
}

func (g *gate) freeze() {
	if !g.frozen {
		g.frozen = true
		g.thawed = make(chan struct{})
	}
}

func (g *gate) thaw() {
	if g.frozen {
		g.frozen = false
		close(g.thawed)
	}
}

func (l *freezeLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := l.inner.Dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	fc := &freezeConn{Conn: c, layer: l, dialled: true, peer: string(addr), key: c.LocalAddr().String(), done: make(chan struct{})}
	l.mu.Lock()
	l.dialled = append(l.dialled, fc)
	l.mu.Unlock()
	return fc, nil
}

func (l *freezeLayer) Accept() (net.Conn, error) {
	c, err := l.inner.Accept()
	if err != nil {
		return nil, err
	}
	fc := &freezeConn{Conn: c, layer: l, key: c.RemoteAddr().String(), done: make(chan struct{})}
	l.mu.Lock()
	l.accepted[fc.key] = fc
	l.mu.Unlock()
	return fc, nil
}

func (l *freezeLayer) Addr() net.Addr { return l.inner.Addr() }

// Close also releases every read or write held on a connection.
func (l *freezeLayer) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.inner.Close()
}

func (l *freezeLayer) freezeReads() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dialledReads.freeze()
	l.acceptedReads.freeze()
}

// freezeWrites blocks writes from now on: every write that got through
// before is counted once it returns.
func (l *freezeLayer) freezeWrites() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes.freeze()
}

// thawDialledReads hands over the answers held on the connections this
// node dialled, and lets the next ones through.
func (l *freezeLayer) thawDialledReads() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dialledReads.thaw()
}

func (l *freezeLayer) thawAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dialledReads.thaw()
	l.acceptedReads.thaw()
	l.writes.thaw()
}

// wake ends the freeze. The connections this node dialled are closed
// rather than thawed: thawed, its pipelines would meet answers carrying a
// newer term, and hashicorp/raft v1.8.0 can then deadlock a pipeline
// (pipelineDecode returns, leaving decodeResponses blocked on doneCh,
// while the send loop picks its CommitTimeout timer over the closed
// finishCh and blocks on inprogressCh), which hangs the node's shutdown
// for good. A failed write ends a pipeline cleanly; the node learns the
// newer term over fresh connections and from the other nodes' requests.
func (l *freezeLayer) wake() {
	l.mu.Lock()
	conns := slices.Clone(l.dialled)
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	l.thawAll()
}

// held is how many reads are held on connections dialled to addr.
func (l *freezeLayer) held(addr net.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.heldFrom[addr.String()]
}

// unanswered counts the requests sent on this node's open dialled
// connections to peers that the peers have not answered yet.
func (l *freezeLayer) unanswered(peers []*freezeLayer) int {
	type sent struct {
		peer, key string
		writes    int
	}
	var conns []sent
	l.mu.Lock()
	for _, c := range l.dialled {
		if !c.closed {
			conns = append(conns, sent{c.peer, c.key, c.writes})
		}
	}
	l.mu.Unlock()
	missing := 0
	for _, c := range conns {
		for _, p := range peers {
			if p.Addr().String() != c.peer {
				continue
			}
			answers := 0
			p.mu.Lock()
			if a := p.accepted[c.key]; a != nil {
				answers = a.writes
			}
			p.mu.Unlock()
			missing += max(0, c.writes-answers)
		}
	}
	return missing
}

type freezeConn struct {
	net.Conn
	layer   *freezeLayer
	dialled bool
	peer    string // dialled: the address dialled
	key     string // the dialling side's address: names the connection at both ends
	done    chan struct{}
	once    sync.Once

	writes int  // guarded by layer.mu
	closed bool // guarded by layer.mu
}

// Read takes what arrives as it arrives, but while reads are frozen hands
// it over only once they thaw.
func (c *freezeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	l := c.layer
	l.mu.Lock()
	g := &l.acceptedReads
	if c.dialled {
		g = &l.dialledReads
	}
	if !g.frozen {
		l.mu.Unlock()
		return n, err
	}
	if c.dialled && n > 0 {
		l.heldFrom[c.peer]++
	}
	thawed := g.thawed
	l.mu.Unlock()
	select {
	case <-thawed:
	case <-c.done:
	case <-l.closed:
	}
	return n, err
}

// Write waits while writes are frozen. It is counted before it is sent,
// under the lock freezeWrites takes.
func (c *freezeConn) Write(p []byte) (int, error) {
	l := c.layer
	l.mu.Lock()
	for l.writes.frozen {
		thawed := l.writes.thawed
		l.mu.Unlock()
		select {
		case <-thawed:
		case <-c.done:
			return 0, net.ErrClosed
		case <-l.closed:
			return 0, net.ErrClosed
		}
		l.mu.Lock()
	}
	c.writes++
	l.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *freezeConn) Close() error {
	c.once.Do(func() {
		close(c.done)
		c.layer.mu.Lock()
		c.closed = true
		c.layer.mu.Unlock()
	})
	return c.Conn.Close()
}
