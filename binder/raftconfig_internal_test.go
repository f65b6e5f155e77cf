package binder

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/raftnet"
)

// validConfig is a node's configuration with Validate's defaults (the
// timeouts raftConfig passes on); its stream is closed with the test.
func validConfig(t *testing.T) Config {
	t.Helper()
	stream, err := raftnet.Listen("127.0.0.1:0", "")
	require.NoError(t, err)
	t.Cleanup(func() { stream.Close() })
	cfg := Config{ID: "n1", DataDir: t.TempDir(), Stream: stream, Peer: &stubPeer{}, HTTPAddr: "127.0.0.1:1",
		Peers: []PeerAddr{{ID: "n1", RaftAddr: stream.Addr().String()}}, Logger: hclog.NewNullLogger()}
	require.NoError(t, cfg.Validate())
	return cfg
}

// An Apply made while raft shuts down is answered (ErrRaftShutdown), never
// left waiting: raft v1.8.0 with BatchApplyCh can accept it into its
// buffer after the main loop stopped, and a write waiting on it held the
// node's Close forever. Each Apply after the shutdown has an even chance
// to be lost that way, so 64 of them all answered proves the channel
// takes nothing raft will not read.
func TestApplyDuringShutdownIsAnswered(t *testing.T) {
	rc := raftConfig(validConfig(t), hclog.NewNullLogger())
	store := raft.NewInmemStore()
	addr, trans := raft.NewInmemTransport("")
	r, err := raft.NewRaft(rc, &raft.MockFSM{}, store, store, raft.NewInmemSnapshotStore(), trans)
	require.NoError(t, err)
	require.NoError(t, r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: addr}}}).Error())
	select {
	case <-r.LeaderCh():
	case <-time.After(10 * time.Second):
		t.Fatal("no leader")
	}
	require.NoError(t, r.Shutdown().Error())

	answered := make(chan error, 64)
	for range 64 {
		f := r.Apply([]byte("x"), time.Second)
		go func() { answered <- f.Error() }()
	}
	deadline := time.After(10 * time.Second)
	for range 64 {
		select {
		case err := <-answered:
			require.ErrorIs(t, err, raft.ErrRaftShutdown)
		case <-deadline:
			t.Fatal("an Apply made after the shutdown was never answered")
		}
	}
}

// A leader whose own removal commits steps down and keeps running until
// the node closes it. With raft's default it shut itself down, and the
// node's Close, whose Shutdown then returned without waiting for raft's
// goroutines, closed the log store under them.
func TestLeaderRemovingItselfStepsDownInsteadOfShuttingDown(t *testing.T) {
	cfg := validConfig(t)

	var rafts []*raft.Raft
	var transports []*raft.InmemTransport
	var servers []raft.Server
	for i := range 3 {
		addr, trans := raft.NewInmemTransport("")
		transports = append(transports, trans)
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprintf("n%d", i+1)), Address: addr})
	}
	for i, trans := range transports {
		for j, other := range transports {
			if i != j {
				trans.Connect(servers[j].Address, other)
			}
		}
	}
	for i := range 3 {
		c := cfg
		c.ID = string(servers[i].ID)
		store := raft.NewInmemStore()
		r, err := raft.NewRaft(raftConfig(c, hclog.NewNullLogger()), &raft.MockFSM{}, store, store, raft.NewInmemSnapshotStore(), transports[i])
		require.NoError(t, err)
		rafts = append(rafts, r)
	}
	defer func() {
		for _, r := range rafts {
			require.NoError(t, r.Shutdown().Error())
		}
	}()
	require.NoError(t, rafts[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error())

	var leader *raft.Raft
	require.Eventually(t, func() bool {
		for _, r := range rafts {
			if r.State() == raft.Leader {
				leader = r
			}
		}
		return leader != nil
	}, 10*time.Second, 10*time.Millisecond, "no leader")
	_, id := leader.LeaderWithID()
	require.NoError(t, leader.RemoveServer(id, 0, 0).Error())

	require.Eventually(t, func() bool { return leader.State() != raft.Leader }, 10*time.Second, 10*time.Millisecond,
		"the removed leader still leads")
	require.Equal(t, raft.Follower, leader.State(), "the removed leader steps down, not shuts raft down by itself")
}
