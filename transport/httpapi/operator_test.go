package httpapi_test

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/httpapi"
	"github.com/lieur/lieur/transport/wire"
)

func decodeAs[T any](t *testing.T, a answer) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal([]byte(a.raw), &v), "body %s", a.raw)
	return v
}

// The operator endpoints on a real one-node cluster, with a read replica
// that never comes up (a nonvoter needs no quorum, so it can be added):
// the peer list and /v1/cluster show roles and the leader's unheard
// record, and every refusal is a JSON error with its status.
func TestOperatorEndpoints(t *testing.T) {
	srv := newAPI(t)
	u := srv.URL

	peers := decodeAs[wire.RaftPeersResponse](t, call(t, "GET", u+"/v1/cluster/peers", ""))
	require.Len(t, peers.Peers, 1)
	p := peers.Peers[0]
	assert.Equal(t, "n1", peers.Leader)
	assert.Equal(t, wire.RaftPeer{ID: "n1", RaftAddr: p.RaftAddr, HTTPAddr: p.HTTPAddr, Voter: true, Role: wire.RoleVoter, Leader: true,
		Reachable: true, State: "leader", LastContactMs: 0, LastIndex: p.LastIndex, AppliedIndex: p.AppliedIndex}, p)
	assert.NotZero(t, p.LastIndex)

	// r1's Raft address takes connections and closes them: every heartbeat
	// fails at once. (A refused port would keep raftnet's patient dial,
	// and the heartbeat, waiting 30 s.)
	closer, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { closer.Close() })
	go func() {
		for {
			c, err := closer.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	a := call(t, "POST", u+"/v1/cluster/join", `{"id":"r1","raft_addr":"`+closer.Addr().String()+`","http_addr":"127.0.0.1:1","nonvoter":true}`)
	require.Equal(t, http.StatusOK, a.status, a.raw)
	var r1 wire.Member
	await(t, "the leader to record r1 unheard", func() bool {
		cl := decodeAs[wire.ClusterResponse](t, call(t, "GET", u+"/v1/cluster", ""))
		for _, m := range cl.Members {
			if m.ID == "r1" {
				r1 = m
			}
		}
		return r1.UnheardMs > 0
	})
	assert.Equal(t, wire.RoleNonvoter, r1.Role)
	assert.False(t, r1.Voter)
	assert.Equal(t, "unknown", r1.State)
	st := decodeAs[wire.Status](t, call(t, "GET", u+"/v1/status", ""))
	assert.Contains(t, st.UnheardMs, "r1", "the leader's status carries its record")

	peers = decodeAs[wire.RaftPeersResponse](t, call(t, "GET", u+"/v1/cluster/peers", ""))
	require.Len(t, peers.Peers, 2)
	assert.Equal(t, "r1", peers.Peers[1].ID)
	assert.False(t, peers.Peers[1].Reachable)
	assert.Equal(t, "unknown", peers.Peers[1].State)
	assert.Positive(t, peers.Peers[1].UnheardMs)

	for _, tt := range []struct {
		method, path string
		status       int
		errHas       string
	}{
		{"POST", "/v1/cluster/members/r1/promote", 400, "the leader has not heard from it"},
		{"POST", "/v1/cluster/members/n9/promote", 404, "not a member"},
		{"POST", "/v1/cluster/members/n9/demote", 404, "not a member"},
		{"POST", "/v1/cluster/members/bad%20id/promote", 400, "invalid request"},
		{"POST", "/v1/cluster/members/n1/demote", 400, "transfer leadership first"},
		{"POST", "/v1/cluster/transfer-leader", 400, "there is no other voter"},
		{"POST", "/v1/cluster/transfer-leader?to=r1", 400, "nonvoter and cannot lead"},
		{"POST", "/v1/cluster/transfer-leader?to=n9", 404, "not a member"},
		{"POST", "/v1/cluster/transfer-leader?to=", 400, "to must name one server"},
		{"POST", "/v1/cluster/transfer-leader?to=n1&to=r1", 400, "to must name one server"},
		{"GET", "/v1/cluster/members/r1/promote", 405, "not allowed"},
		{"DELETE", "/v1/cluster/peers", 405, "not allowed"},
		{"DELETE", "/v1/cluster/members/n1", 400, "is the leader"},
	} {
		a := call(t, tt.method, u+tt.path, "")
		assert.Equal(t, tt.status, a.status, "%s %s: %s", tt.method, tt.path, a.raw)
		assert.Contains(t, a.body["error"], tt.errHas, "%s %s", tt.method, tt.path)
	}

	a = call(t, "POST", u+"/v1/cluster/transfer-leader?to=n1", "")
	require.Equal(t, http.StatusOK, a.status, a.raw)
	assert.Equal(t, wire.TransferLeaderResponse{Leader: "n1"}, decodeAs[wire.TransferLeaderResponse](t, a), "naming the leader changes nothing")
	a = call(t, "POST", u+"/v1/cluster/members/r1/demote", "")
	require.Equal(t, http.StatusOK, a.status, a.raw)
	assert.Equal(t, map[string]any{"id": "r1", "role": "nonvoter"}, a.body, "demoting a nonvoter changes nothing")

	a = call(t, "DELETE", u+"/v1/cluster/members/r1", "")
	require.Equal(t, http.StatusOK, a.status, "a nonvoter goes whatever the quorum: %s", a.raw)
	peers = decodeAs[wire.RaftPeersResponse](t, call(t, "GET", u+"/v1/cluster/peers", ""))
	assert.Len(t, peers.Peers, 1)
}

// Every operator endpoint needs the admin role when tokens are on.
func TestOperatorEndpointsNeedAdmin(t *testing.T) {
	const admin, reader = "a1a1a1a1a1a1a1a1a1", "q1q1q1q1q1q1q1q1q1"
	auth, err := httpapi.ParseTokens(strings.NewReader("c1c1c1c1c1c1c1c1c1 cluster\n" + admin + " admin\n" + reader + " read\n"))
	require.NoError(t, err)
	srv, _ := newAPIWith(t, func(*binder.Node) []httpapi.Option { return []httpapi.Option{httpapi.WithAuth(auth)} })
	for _, ep := range []struct{ method, path string }{
		{"GET", "/v1/cluster/peers"},
		{"POST", "/v1/cluster/members/n1/promote"},
		{"POST", "/v1/cluster/members/n1/demote"},
		{"POST", "/v1/cluster/transfer-leader?to=n1"},
	} {
		for token, want := range map[string]int{"": 401, reader: 403} {
			req, err := http.NewRequest(ep.method, srv.URL+ep.path, nil)
			require.NoError(t, err)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			var e wire.Error
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
			resp.Body.Close()
			assert.Equal(t, want, resp.StatusCode, "%s %s with %q", ep.method, ep.path, token)
			assert.NotEmpty(t, e.Error)
		}
		req, err := http.NewRequest(ep.method, srv.URL+ep.path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.NotContains(t, []int{401, 403}, resp.StatusCode, "%s %s with the admin token", ep.method, ep.path)
	}
}
