package httpapi_test

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/httpapi"
	"github.com/lieur/lieur/transport/raftnet"
)

// member is one binder of an in-process cluster.
type member struct {
	node *binder.Node
	srv  *httptest.Server
	stop func() // idempotent
}

// newCluster3 starts three real binders that bootstrap together, with
// --token-file and --auth-reads (so every call between them must carry
// the cluster token), and waits until all have caught up and know the
// cluster id.
func newCluster3(t *testing.T) []*member {
	t.Helper()
	var streams []*raftnet.TCPStreamLayer
	var lns []net.Listener
	var peers []binder.PeerAddr
	for i := range 3 {
		s, err := raftnet.Listen("127.0.0.1:0", "")
		require.NoError(t, err)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		streams, lns = append(streams, s), append(lns, l)
		peers = append(peers, binder.PeerAddr{ID: fmt.Sprintf("n%d", i+1), RaftAddr: s.Addr().String()})
	}
	var out []*member
	for i := range 3 {
		auth := authReads(t)
		peer := httpapi.NewPeerClient()
		peer.SetToken(auth.ClusterToken())
		node, err := binder.New(binder.Config{
			ID: peers[i].ID, HTTPAddr: lns[i].Addr().String(), DataDir: t.TempDir(), Peers: peers,
			Stream: streams[i], Peer: peer,
		})
		require.NoError(t, err)
		srv := httptest.NewUnstartedServer(httpapi.NewServer(node, nil, httpapi.WithAuth(auth)))
		srv.Listener.Close()
		srv.Listener = lns[i]
		srv.Start()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = node.Run(ctx); close(done) }()
		var once sync.Once
		m := &member{node: node, srv: srv, stop: func() {
			once.Do(func() {
				cancel()
				<-done
				_ = node.Close()
				srv.Close()
				peer.Close()
			})
		}}
		t.Cleanup(m.stop)
		out = append(out, m)
	}
	await(t, "three binders caught up, knowing the cluster id and every address", func() bool {
		for _, m := range out {
			st := m.node.Status()
			if !st.CaughtUp || !st.ClusterIDKnown || st.Leader == "" {
				return false
			}
			_, members := m.node.Cluster(context.Background())
			for _, mm := range members {
				if mm.HTTPAddr == "" {
					return false
				}
			}
		}
		return true
	})
	return out
}

func memberList(t *testing.T, a answer) []map[string]any {
	t.Helper()
	raw, ok := a.body["members"].([]any)
	require.True(t, ok, "members is a list: %v", a.body)
	out := make([]map[string]any, len(raw))
	for i, m := range raw {
		out[i] = m.(map[string]any)
	}
	return out
}

// One binder shows every member's own /v1/status, fetched through its
// peer client (with the cluster token: the members refuse reads without
// one), and marks a stopped member unreachable with the reason.
func TestClusterStatusShowsEveryMembersOwnStatus(t *testing.T) {
	c := newCluster3(t)
	a := callWith(t, c[0].srv.URL+"/v1/cluster/status", readToken)
	require.Equal(t, 200, a.status, a.body)
	assert.Equal(t, "n1", a.body["binder"])
	assert.NotEmpty(t, a.body["leader"])
	members := memberList(t, a)
	require.Len(t, members, 3)
	for i, m := range members {
		id := fmt.Sprintf("n%d", i+1)
		assert.Equal(t, id, m["id"], "ordered by id")
		require.Equal(t, true, m["reachable"], "%s: %v", id, m["error"])
		assert.NotContains(t, m, "error")
		assert.Equal(t, true, m["voter"])
		assert.Equal(t, c[i].node.Status().ID, id)
		assert.NotEmpty(t, m["raft_addr"])
		assert.Equal(t, c[i].srv.Listener.Addr().String(), m["http_addr"])
		st, ok := m["status"].(map[string]any)
		require.True(t, ok, "%s has a status", id)
		// Exactly what the member itself answers to /v1/status, fields
		// the older peer call dropped included.
		own := callWith(t, c[i].srv.URL+"/v1/status", readToken)
		require.Equal(t, 200, own.status)
		for _, k := range []string{"id", "table_hash", "caught_up", "log_format", "cluster_id_known", "verification_hold", "term"} {
			assert.Equal(t, own.body[k], st[k], "%s: %s", id, k)
		}
		for k := range own.body {
			if k != "lease_guard" && k != "unheard_ms" { // omitted when empty; may come and go
				assert.Contains(t, st, k, "%s: every field of /v1/status", id)
			}
		}
	}

	c[2].stop()
	a = callWith(t, c[0].srv.URL+"/v1/cluster/status", readToken)
	require.Equal(t, 200, a.status, a.body)
	members = memberList(t, a)
	require.Len(t, members, 3, "a stopped member is still a member")
	assert.Equal(t, true, members[0]["reachable"])
	assert.Equal(t, true, members[1]["reachable"])
	down := members[2]
	assert.Equal(t, "n3", down["id"])
	assert.Equal(t, false, down["reachable"])
	assert.NotContains(t, down, "status")
	assert.Contains(t, down["error"], c[2].srv.Listener.Addr().String(), "the error names what could not be reached")
	assert.NotContains(t, down["error"], "leader", "a member being down says nothing of a leader")
}
