package binder

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/raftnet"
)

// An Apply made while raft shuts down is answered (ErrRaftShutdown), never
// left waiting: raft v1.8.0 with BatchApplyCh can accept it into its
// buffer after the main loop stopped, and a write waiting on it held the
// node's Close forever. Each Apply after the shutdown has an even chance
// to be lost that way, so 64 of them all answered proves the channel
// takes nothing raft will not read.
func TestApplyDuringShutdownIsAnswered(t *testing.T) {
	stream, err := raftnet.Listen("127.0.0.1:0", "")
	require.NoError(t, err)
	defer stream.Close()
	cfg := Config{ID: "n1", DataDir: t.TempDir(), Stream: stream, Peer: &stubPeer{}, HTTPAddr: "127.0.0.1:1",
		Peers: []PeerAddr{{ID: "n1", RaftAddr: stream.Addr().String()}}, Logger: hclog.NewNullLogger()}
	require.NoError(t, cfg.Validate()) // the timeouts' defaults
	rc := raftConfig(cfg, hclog.NewNullLogger())
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
