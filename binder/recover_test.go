package binder_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/httpapi"
	"github.com/lieur/lieur/transport/raftnet"
)

func TestParseRecovery(t *testing.T) {
	good := map[string][]binder.RecoveryServer{
		"n1=127.0.0.1:7001\n": {{ID: "n1", RaftAddr: "127.0.0.1:7001"}},
		"# survivors\n\n n1 = 10.0.0.1:7001  # this one\nn2=10.0.0.2:7001": {
			{ID: "n1", RaftAddr: "10.0.0.1:7001"}, {ID: "n2", RaftAddr: "10.0.0.2:7001"}},
		` [{"id":"n1","address":"10.0.0.1:7001"},{"id":"n2","address":"10.0.0.2:7001","non_voter":true}]`: {
			{ID: "n1", RaftAddr: "10.0.0.1:7001"}, {ID: "n2", RaftAddr: "10.0.0.2:7001", Nonvoter: true}},
	}
	for in, want := range good {
		got, err := binder.ParseRecovery([]byte(in))
		require.NoError(t, err, "%q", in)
		assert.Equal(t, want, got, "%q", in)
	}
	bad := map[string]string{
		"":                                     "no server",
		"# nobody\n":                           "no server",
		"n1 127.0.0.1:7001":                    "not id=host:port",
		"n1=127.0.0.1":                         "not host:port",
		"n1=:7001":                             "not host:port",
		"n 1=127.0.0.1:7001":                   "server \"n 1\"",
		"n1=127.0.0.1:7001\nn1=127.0.0.1:7002": "listed twice",
		"n1=127.0.0.1:7001\nn2=127.0.0.1:7001": "share the address",
		`[{"id":"n1","address":"h:1","x":1}]`:  "unknown field",
		`[{"id":"n1","address":"h:1"}] [`:      "data after",
		`[{"id":"n1","address":"h:1","non_voter":true}]`: "no voter",
		`[]`: "no server",
	}
	for in, msg := range bad {
		_, err := binder.ParseRecovery([]byte(in))
		require.Error(t, err, "%q", in)
		assert.ErrorIs(t, err, binder.ErrRecovery)
		assert.Contains(t, err.Error(), msg, "%q", in)
	}
}

// diskNode is a binder whose Raft address and data dir survive a restart.
type diskNode struct {
	id, raftAddr, httpAddr, dir string
	node                        *binder.Node
	stop                        func()
}

// open starts the node with peers (first start) or recovery.
func (d *diskNode) open(t *testing.T, peers []binder.PeerAddr, rec *binder.Recovery) error {
	t.Helper()
	stream, err := raftnet.Listen(d.raftAddr, "")
	require.NoError(t, err)
	ln, err := net.Listen("tcp", d.httpAddr)
	require.NoError(t, err)
	peer := httpapi.NewPeerClient()
	node, err := binder.New(binder.Config{ID: d.id, HTTPAddr: d.httpAddr, DataDir: d.dir, Peers: peers, Recovery: rec,
		Stream: stream, Peer: peer, Logger: hclog.New(&hclog.LoggerOptions{Name: d.id, Level: hclog.Error})})
	if err != nil {
		stream.Close()
		ln.Close()
		peer.Close()
		return err
	}
	srv := &http.Server{Handler: httpapi.NewServer(node, nil), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = node.Run(ctx); close(done) }()
	d.node = node
	d.stop = func() {
		cancel()
		<-done
		_ = node.Close()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
		peer.Close()
		d.node, d.stop = nil, nil
	}
	return nil
}

// The survivor of a cluster that lost two of its three voters for good
// comes back alone with --recover-peers: it leads, holds every write, and
// takes new ones; started again with the same file, it does not rewrite
// its configuration again.
func TestRecoverTheSurvivorOfALostQuorum(t *testing.T) {
	var nodes []*diskNode
	var peers []binder.PeerAddr
	for _, id := range []string{"n1", "n2", "n3"} {
		ports := make([]int, 2)
		for j := range ports {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			ports[j] = l.Addr().(*net.TCPAddr).Port
			l.Close()
		}
		d := &diskNode{id: id, raftAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), httpAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])), dir: t.TempDir()}
		nodes = append(nodes, d)
		peers = append(peers, binder.PeerAddr{ID: id, RaftAddr: d.raftAddr})
	}
	for _, d := range nodes {
		require.NoError(t, d.open(t, peers, nil))
	}
	t.Cleanup(func() {
		for _, d := range nodes {
			if d.stop != nil {
				d.stop()
			}
		}
	})
	n1 := nodes[0]
	await(t, 20*time.Second, "a leader n1 can forward to", func() bool {
		st := n1.node.Status()
		_, members := n1.node.Cluster(context.Background())
		for _, m := range members {
			if m.HTTPAddr == "" {
				return false
			}
		}
		return st.Leader != "" && st.ClusterIDKnown
	})
	ctx := context.Background()
	for i, id := range []string{"a", "b", "c"} {
		_, _, err := n1.node.Register(ctx, binder.Registration{ID: id, Type: "echo", Address: "127.0.0.1", Port: i + 1})
		require.NoError(t, err)
	}
	_, err := n1.node.Deregister(ctx, "b", "", nil)
	require.NoError(t, err)
	await(t, 5*time.Second, "n1 to apply its writes", func() bool { return len(idsAt(n1.node)) == 2 })

	// n2 and n3 are lost for good; n1 cannot elect a leader any more.
	nodes[1].stop()
	nodes[2].stop()
	n1.stop()

	file := filepath.Join(t.TempDir(), "peers.txt")
	require.NoError(t, os.WriteFile(file, []byte("# the survivors\n"+n1.id+"="+n1.raftAddr+"\n"), 0o600))
	rec, err := binder.ReadRecoveryFile(file)
	require.NoError(t, err)

	t.Run("refusals", func(t *testing.T) {
		other := &diskNode{id: "n9", raftAddr: n1.raftAddr, httpAddr: n1.httpAddr, dir: t.TempDir()}
		err := other.open(t, nil, rec)
		assert.ErrorIs(t, err, binder.ErrRecovery)
		assert.ErrorContains(t, err, "does not list this node")

		fresh := &diskNode{id: "n1", raftAddr: n1.raftAddr, httpAddr: n1.httpAddr, dir: t.TempDir()}
		err = fresh.open(t, nil, rec)
		assert.ErrorIs(t, err, binder.ErrRecovery)
		assert.ErrorContains(t, err, "no Raft state")

		moved := *rec
		moved.Servers = []binder.RecoveryServer{{ID: "n1", RaftAddr: "127.0.0.1:1"}}
		err = n1.open(t, nil, &moved)
		assert.ErrorIs(t, err, binder.ErrRecovery)
		assert.ErrorContains(t, err, "listens for Raft at")
	})

	require.NoError(t, n1.open(t, nil, rec))
	await(t, 10*time.Second, "n1 to lead alone", func() bool { return n1.node.IsLeader() })
	assert.Equal(t, []string{"a", "c"}, idsAt(n1.node), "every write it had")
	_, idx, err := n1.node.Register(ctx, binder.Registration{ID: "d", Type: "echo", Address: "127.0.0.1", Port: 4})
	require.NoError(t, err, "a new write commits")
	_, members := n1.node.Cluster(ctx)
	require.Len(t, members, 1)
	assert.Equal(t, "n1", members[0].ID)

	// Started again with the flag still given: it resumes without
	// recovering again (which would write one more snapshot of the log),
	// and the write made since the recovery is still there.
	snapshots := func() int {
		entries, err := os.ReadDir(filepath.Join(n1.dir, "snapshots"))
		require.NoError(t, err)
		return len(entries)
	}
	n1.stop()
	recovered := snapshots()
	require.NoError(t, n1.open(t, nil, rec))
	assert.Equal(t, recovered, snapshots(), "the peers file was applied once")
	await(t, 10*time.Second, "n1 to lead again", func() bool { return n1.node.IsLeader() && n1.node.CaughtUp() })
	require.True(t, n1.node.WaitApplied(ctx, idx))
	assert.Equal(t, []string{"a", "c", "d"}, idsAt(n1.node))
}
