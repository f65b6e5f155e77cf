package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/wire"
)

// leaseOf returns the lease of id in a GET /v1/leases answer, and whether
// the answer holds one.
func leaseOf(t *testing.T, a answer, id string) (map[string]any, bool) {
	t.Helper()
	leases, ok := a.body["leases"].(map[string]any)
	require.True(t, ok, "leases is an object: %s", a.raw)
	l, ok := leases[id].(map[string]any)
	return l, ok
}

// sendWith sends a request with a token and, optionally, headers; the
// body, when given, is JSON.
func sendWith(t *testing.T, method, url, token, body string, header http.Header) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	status, h, data := roundTrip(t, req, token)
	a := answer{status: status, header: h, raw: string(data)}
	require.NoError(t, json.Unmarshal(data, &a.body), a.raw)
	require.Equal(t, "application/json", h.Get("Content-Type"), a.raw)
	return a
}

// roundTrip sends req, with token as a bearer credential when given, and
// returns the status, the headers and the whole body.
func roundTrip(t *testing.T, req *http.Request, token string) (int, http.Header, []byte) {
	t.Helper()
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, data
}

// On the leader: a leased instance has an age measured when the leader
// answers, from its registration until a heartbeat arrives, then from the
// heartbeat; an instance without a lease is absent; ?type= keeps one
// type; bad parameters are JSON 400s.
func TestLeasesOnTheLeaderShowAgesSinceTheLastHeartbeat(t *testing.T) {
	srv := newAPI(t)
	for _, body := range []string{
		`{"type":"echo","id":"echo-1","address":"127.0.0.1","port":1,"ttl":"30s"}`,
		`{"type":"echo","id":"echo-2","address":"127.0.0.1","port":2}`,
		`{"type":"time","id":"time-1","address":"127.0.0.1","port":3,"ttl":"1m"}`,
	} {
		require.Equal(t, 200, call(t, "POST", srv.URL+"/v1/services", body).status)
	}

	a := call(t, "GET", srv.URL+"/v1/leases", "")
	require.Equal(t, 200, a.status, a.raw)
	assert.Equal(t, "n1", a.body["leader"])
	l, ok := leaseOf(t, a, "echo-1")
	require.True(t, ok, a.raw)
	assert.Equal(t, "registration", l["since"], "no heartbeat yet: the clock runs from the registration")
	assert.Equal(t, float64(30000), l["ttl_ms"])
	_, ok = leaseOf(t, a, "echo-2")
	assert.False(t, ok, "an instance without a lease has no age: %s", a.raw)
	_, ok = leaseOf(t, a, "time-1")
	assert.True(t, ok, a.raw)

	// The age grows on the leader's clock between two answers...
	var before float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, ok = leaseOf(t, call(t, "GET", srv.URL+"/v1/leases?type=echo", ""), "echo-1")
		require.True(t, ok)
		if before = l["age_ms"].(float64); before >= 300 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the age never reached 300 ms: %v", l)
		time.Sleep(20 * time.Millisecond)
	}
	// ... and a heartbeat starts it again.
	require.Equal(t, 200, call(t, "PUT", srv.URL+"/v1/services/echo-1/heartbeat", "").status)
	a = call(t, "GET", srv.URL+"/v1/leases?type=echo", "")
	require.Equal(t, 200, a.status, a.raw)
	l, ok = leaseOf(t, a, "echo-1")
	require.True(t, ok)
	assert.Equal(t, "heartbeat", l["since"])
	assert.Less(t, l["age_ms"].(float64), before, "the heartbeat renewed the clock")
	_, ok = leaseOf(t, a, "time-1")
	assert.False(t, ok, "?type=echo keeps echo's leases only: %s", a.raw)

	a = call(t, "GET", srv.URL+"/v1/leases?type=nothing", "")
	require.Equal(t, 200, a.status, a.raw)
	assert.Equal(t, map[string]any{}, a.body["leases"], "a type without leases: an empty object, not null")

	for _, q := range []string{"type=Bad_Type", "type=echo&type=time", "type="} {
		bad := call(t, "GET", srv.URL+"/v1/leases?"+q, "")
		assert.Equal(t, 400, bad.status, "%s: %s", q, bad.raw)
	}
	assert.Equal(t, 405, call(t, "POST", srv.URL+"/v1/leases", `{}`).status)
}

// On a follower (with --auth-reads, so the forwarded call must carry the
// cluster token): the question goes to the leader, whose clock measures
// the ages; a heartbeat sent through another follower shows there. A
// question marked leader-only is refused by a follower, not forwarded
// again. Once the leader is gone, the new one starts every lease's clock
// afresh and says so: "leadership", not a heartbeat it never received.
func TestLeasesAreForwardedToTheLeaderAndRestartWithANewOne(t *testing.T) {
	c := newCluster3(t)
	lead := -1
	await(t, "a leader", func() bool {
		for i, m := range c {
			if m.node.IsLeader() {
				lead = i
				return true
			}
		}
		return false
	})
	var followers []int
	for i := range c {
		if i != lead {
			followers = append(followers, i)
		}
	}
	f0, f1 := c[followers[0]].srv.URL, c[followers[1]].srv.URL
	reg := sendWith(t, "POST", f0+"/v1/services", clusterToken,
		`{"type":"echo","id":"echo-1","address":"127.0.0.1","port":1,"ttl":"1m"}`, nil)
	require.Equal(t, 200, reg.status, reg.raw)
	require.Equal(t, 200, sendWith(t, "POST", f0+"/v1/services", clusterToken,
		`{"type":"echo","id":"echo-2","address":"127.0.0.1","port":2}`, nil).status)

	assert.Equal(t, 401, callWith(t, f1+"/v1/leases", "").status, "a read like any other: --auth-reads asks for a token")
	a := callWith(t, f1+"/v1/leases?type=echo", readToken)
	require.Equal(t, 200, a.status, a.body)
	assert.Equal(t, c[lead].node.Status().ID, a.body["leader"], "measured by the leader")
	leases := a.body["leases"].(map[string]any)
	require.Contains(t, leases, "echo-1")
	assert.NotContains(t, leases, "echo-2", "no lease, no age")
	assert.Equal(t, "registration", leases["echo-1"].(map[string]any)["since"])

	hb := sendWith(t, "PUT", f0+"/v1/services/echo-1/heartbeat", clusterToken, "", nil)
	require.Equal(t, 200, hb.status, hb.raw)
	a = callWith(t, f1+"/v1/leases", readToken)
	require.Equal(t, 200, a.status, a.body)
	assert.Equal(t, "heartbeat", a.body["leases"].(map[string]any)["echo-1"].(map[string]any)["since"],
		"a heartbeat through one follower, seen through another: both reach the leader")

	only := sendWith(t, "GET", f1+"/v1/leases", clusterToken, "", http.Header{wire.HeaderLeaderOnly: {"true"}})
	assert.Equal(t, 503, only.status, only.raw)
	assert.Equal(t, wire.CodeNotLeader, only.body["code"], "a forwarded question is never forwarded again")

	// The leader goes: the new one has heard no heartbeat yet.
	old := c[lead].node.Status().ID
	c[lead].stop()
	var now answer
	await(t, "a new leader to answer through "+f1, func() bool {
		now = sendWith(t, "GET", f1+"/v1/leases", readToken, "", nil)
		return now.status == 200
	})
	assert.NotEqual(t, old, now.body["leader"])
	l, ok := leaseOf(t, now, "echo-1")
	require.True(t, ok, now.raw)
	assert.Equal(t, "leadership", l["since"], "the new leader's clock started when it took over, not at a heartbeat")
	hb = sendWith(t, "PUT", f1+"/v1/services/echo-1/heartbeat", clusterToken, "", nil)
	require.Equal(t, 200, hb.status, hb.raw)
	l, ok = leaseOf(t, sendWith(t, "GET", f1+"/v1/leases", readToken, "", nil), "echo-1")
	require.True(t, ok)
	assert.Equal(t, "heartbeat", l["since"], fmt.Sprint(l))
}
