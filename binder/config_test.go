// Internal tests: the Close case builds a Node as New leaves it after a
// failed bootstrap, which needs the unexported fields.
package binder

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/raftnet"
)

// stubPeer fails every Join with join(ctx); its other methods are never
// reached by these tests (the embedded nil interface would panic).
type stubPeer struct {
	Peer
	join  func(ctx context.Context) error
	calls atomic.Int32
}

func (p *stubPeer) Join(ctx context.Context, _ string, _ Member) error {
	p.calls.Add(1)
	return p.join(ctx)
}

// stubStream satisfies Validate's non-nil check; Validate never uses it.
type stubStream struct{ raft.StreamLayer }

func TestConfigValidatePeers(t *testing.T) {
	base := func() Config {
		return Config{ID: "n1", DataDir: "/tmp/x", HTTPAddr: "127.0.0.1:8001", Stream: stubStream{}, Peer: &stubPeer{}}
	}
	tests := []struct {
		name    string
		peers   []PeerAddr
		join    string
		wantErr string // empty: valid
	}{
		{name: "three voters", peers: []PeerAddr{{"n1", "127.0.0.1:7001"}, {"n2", "127.0.0.1:7002"}, {"n3", "127.0.0.1:7003"}}},
		{name: "alone", peers: []PeerAddr{{"n1", "127.0.0.1:7001"}}},
		{name: "join", join: "http://127.0.0.1:8002"},
		{name: "neither", wantErr: "config: either peers or join is required"},
		{name: "both", peers: []PeerAddr{{"n1", "127.0.0.1:7001"}}, join: "http://127.0.0.1:8002", wantErr: "config: peers and join are exclusive"},
		{name: "duplicate id", peers: []PeerAddr{{"n1", "127.0.0.1:7001"}, {"n1", "127.0.0.1:7002"}},
			wantErr: `config: peer "n1" listed twice`},
		{name: "duplicate raft address", peers: []PeerAddr{{"n1", "127.0.0.1:7001"}, {"n2", "127.0.0.1:7002"}, {"n3", "127.0.0.1:7001"}},
			wantErr: `config: peers "n1" and "n3" share raft address 127.0.0.1:7001`},
		{name: "duplicate raft address of others", peers: []PeerAddr{{"n1", "127.0.0.1:7001"}, {"n2", "127.0.0.1:7002"}, {"n3", "127.0.0.1:7002"}},
			wantErr: `config: peers "n2" and "n3" share raft address 127.0.0.1:7002`},
		{name: "self missing", peers: []PeerAddr{{"n2", "127.0.0.1:7002"}, {"n3", "127.0.0.1:7003"}},
			wantErr: "config: peers must include this node (n1)"},
		{name: "peer without address", peers: []PeerAddr{{"n1", "127.0.0.1:7001"}, {"n2", ""}},
			wantErr: `config: peer "n2": id and raft address are required`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			c.Peers, c.Join = tc.peers, tc.join
			err := c.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.EqualError(t, err, tc.wantErr)
		})
	}
}

func TestConfigJoinTimeoutDefault(t *testing.T) {
	c := Config{ID: "n1", DataDir: "/tmp/x", HTTPAddr: "127.0.0.1:8001", Stream: stubStream{}, Peer: &stubPeer{}, Join: "http://127.0.0.1:8002"}
	require.NoError(t, c.Validate())
	assert.Equal(t, 30*time.Second, c.JoinTimeout)

	c.JoinTimeout = 2 * time.Second
	require.NoError(t, c.Validate())
	assert.Equal(t, 2*time.Second, c.JoinTimeout)
}

// TestConfigJoinTimeoutEndsRun: a node whose --join never succeeds gives
// up after JoinTimeout with the last failure, whether the target refuses
// at once or hangs until the deadline, and then closes cleanly.
func TestConfigJoinTimeoutEndsRun(t *testing.T) {
	refused := errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	tests := []struct {
		name    string
		join    func(ctx context.Context) error
		wantErr string
	}{
		{"refused", func(context.Context) error { return refused },
			"join http://127.0.0.1:1: no successful answer within 300ms: " + refused.Error()},
		{"hangs", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
			"join http://127.0.0.1:1: no successful answer within 300ms: " + context.DeadlineExceeded.Error()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stream, err := raftnet.Listen("127.0.0.1:0", "")
			require.NoError(t, err)
			peer := &stubPeer{join: tc.join}
			n, err := New(Config{
				ID: "n1", HTTPAddr: "127.0.0.1:1", DataDir: t.TempDir(), Join: "http://127.0.0.1:1",
				JoinTimeout: 300 * time.Millisecond, Stream: stream, Peer: peer,
				Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Error}),
			})
			require.NoError(t, err)
			defer func() { require.NoError(t, n.Close()) }()

			done := make(chan error, 1)
			go func() { done <- n.Run(context.Background()) }()
			select {
			case err := <-done:
				require.EqualError(t, err, tc.wantErr)
			case <-time.After(10 * time.Second):
				t.Fatal("Run still joining 10s after a 300ms join timeout")
			}
			assert.GreaterOrEqual(t, peer.calls.Load(), int32(1))
		})
	}
}

// TestCloseAfterFailedStart: New calls Close when bootstrap fails, after
// raft started but before the leader observer is registered; Close used to
// dereference that nil observer. Close must be safe at any point New
// reached.
func TestCloseAfterFailedStart(t *testing.T) {
	t.Run("nothing started", func(t *testing.T) {
		n := &Node{}
		require.NoError(t, n.Close())
	})
	t.Run("raft started, no observer", func(t *testing.T) {
		stream, err := raftnet.Listen("127.0.0.1:0", "")
		require.NoError(t, err)
		cfg := Config{ID: "n1", Stream: stream, Logger: hclog.NewNullLogger()}
		trans := raftTransport(cfg)
		rc := raft.DefaultConfig()
		rc.LocalID = "n1"
		rc.Logger = hclog.NewNullLogger()
		store := raft.NewInmemStore()
		r, err := raft.NewRaft(rc, &raft.MockFSM{}, store, store, raft.NewInmemSnapshotStore(), trans)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		n := &Node{cfg: cfg, log: cfg.Logger, raft: r, trans: trans, ctx: ctx, cancel: cancel}
		require.NoError(t, n.Close())
		assert.Equal(t, raft.Shutdown, r.State())
	})
}
