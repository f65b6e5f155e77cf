package httpapi_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/httpapi"
	"github.com/lieur/lieur/transport/wire"
)

// closedPort returns a loopback port nothing listens on (any more).
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

// eventList returns an answer's events as maps, newest first.
func eventList(t *testing.T, a answer) []map[string]any {
	t.Helper()
	raw, ok := a.body["events"].([]any)
	require.True(t, ok, "events is a list: %s", a.raw)
	out := make([]map[string]any, len(raw))
	for i, e := range raw {
		out[i] = e.(map[string]any)
	}
	return out
}

func num(v any) uint64 {
	f, _ := v.(float64)
	return uint64(f)
}

// The kinds and reasons the UI shows, from real registrations, a
// deregistration and a verified report on a real node, newest first.
func TestEventsRecordRegistrationsRemovalsAndReports(t *testing.T) {
	srv := newAPI(t)
	port := closedPort(t)
	reg := func(body string) uint64 {
		a := call(t, "POST", srv.URL+"/v1/services", body)
		require.Equal(t, 200, a.status, a.raw)
		return num(a.body["index"])
	}
	first := reg(fmt.Sprintf(`{"type":"echo","id":"echo-1","address":"127.0.0.1","port":%d}`, port))
	again := reg(fmt.Sprintf(`{"type":"echo","id":"echo-1","address":"127.0.0.1","port":%d,"meta":{"v":"2"}}`, port))
	other := reg(`{"type":"time","id":"time-1","address":"127.0.0.1","port":1}`)
	del := call(t, "DELETE", srv.URL+"/v1/services/time-1", "")
	require.Equal(t, 200, del.status)
	rep := call(t, "POST", srv.URL+"/v1/reports", `{"id":"echo-1"}`)
	require.Equal(t, 200, rep.status, rep.raw)
	require.Equal(t, "removed", rep.body["verdict"], "nothing listens on the instance's port")

	a := call(t, "GET", srv.URL+"/v1/events", "")
	require.Equal(t, 200, a.status, a.raw)
	assert.Equal(t, "application/json", a.header.Get("Content-Type"))
	events := eventList(t, a)
	type ev struct{ kind, id, reason string }
	var got []ev
	for _, e := range events {
		got = append(got, ev{e["kind"].(string), e["id"].(string), e["reason"].(string)})
		_, hasHealth := e["health"]
		assert.False(t, hasHealth, "health is only on health events: %v", e)
		_, err := time.Parse(time.RFC3339Nano, e["time"].(string))
		assert.NoError(t, err)
		assert.True(t, strings.HasSuffix(e["time"].(string), "Z"), "UTC: %s", e["time"])
	}
	// The wire's names are the binder's.
	assert.Equal(t, []string{wire.EventRegistered, wire.EventRemoved, wire.EventHealth},
		[]string{binder.EventRegistered, binder.EventRemoved, binder.EventHealth})
	assert.Equal(t, []ev{
		{"removed", "echo-1", "reported-down"},
		{"removed", "time-1", "deregistered"},
		{"registered", "time-1", ""},
		{"registered", "echo-1", "replaced"},
		{"registered", "echo-1", ""},
	}, got)
	assert.Equal(t, []uint64{num(rep.body["index"]), num(del.body["index"]), other, again, first},
		[]uint64{num(events[0]["index"]), num(events[1]["index"]), num(events[2]["index"]), num(events[3]["index"]), num(events[4]["index"])})
	assert.Equal(t, "echo", events[0]["type"])
	assert.Equal(t, "127.0.0.1", events[0]["address"])
	assert.Equal(t, float64(port), events[0]["port"])
	newest := num(a.body["index"])
	assert.Equal(t, num(events[0]["index"]), newest)
	assert.Equal(t, strconv.FormatUint(newest, 10), a.header.Get(wire.HeaderIndex))
	assert.Equal(t, first, num(a.body["oldest"]), "the node started empty: its first event is the oldest")

	limited := call(t, "GET", srv.URL+"/v1/events?limit=2", "")
	require.Equal(t, 200, limited.status)
	require.Len(t, eventList(t, limited), 2, "limit keeps the newest")
	assert.Equal(t, "reported-down", eventList(t, limited)[0]["reason"])

	since := call(t, "GET", srv.URL+"/v1/events?index="+strconv.FormatUint(other, 10), "")
	require.Equal(t, 200, since.status)
	assert.Len(t, eventList(t, since), 2, "only the events after index %d", other)
}

// A blocking query waits for the next event, and answers an empty list
// with the same index when its wait passes without one.
func TestEventsBlockingQueryWakesOnARegistration(t *testing.T) {
	srv := newAPI(t)
	require.Equal(t, 200, call(t, "POST", srv.URL+"/v1/services", `{"type":"echo","address":"127.0.0.1","port":1}`).status)
	now := call(t, "GET", srv.URL+"/v1/events", "")
	idx := now.header.Get(wire.HeaderIndex)
	require.NotEqual(t, "0", idx)

	start := time.Now()
	same := call(t, "GET", srv.URL+"/v1/events?index="+idx+"&wait=100ms", "")
	assert.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond, "it waited")
	require.Equal(t, 200, same.status)
	assert.Empty(t, eventList(t, same))
	assert.Equal(t, idx, same.header.Get(wire.HeaderIndex))
	assert.Equal(t, idx, strconv.FormatUint(num(same.body["index"]), 10))

	blocked := make(chan answer, 1)
	go func() { blocked <- call(t, "GET", srv.URL+"/v1/events?index="+idx+"&wait=1m", "") }()
	reg := call(t, "POST", srv.URL+"/v1/services", `{"type":"late","address":"127.0.0.1","port":2}`)
	require.Equal(t, 200, reg.status)
	select {
	case b := <-blocked:
		require.Equal(t, 200, b.status)
		events := eventList(t, b)
		require.Len(t, events, 1, b.raw)
		assert.Equal(t, "late", events[0]["type"])
		assert.Equal(t, "registered", events[0]["kind"])
		assert.Equal(t, strconv.FormatUint(num(reg.body["index"]), 10), b.header.Get(wire.HeaderIndex))
	case <-time.After(10 * time.Second):
		t.Fatal("the blocking query did not wake on a registration")
	}
}

func TestEventsBadParametersAre400(t *testing.T) {
	srv := newAPI(t)
	for _, q := range []struct{ query, names string }{
		{"index=x", "index"},
		{"index=-1", "index"},
		{"index=1&wait=soon", "wait"},
		{"index=1&wait=-1s", "wait"},
		{"wait=soon", "wait"},
		{"limit=0", "limit"},
		{"limit=1025", "limit"},
		{"limit=x", "limit"},
		{"limit=", "limit"},
	} {
		a := call(t, "GET", srv.URL+"/v1/events?"+q.query, "")
		assert.Equal(t, 400, a.status, q.query)
		assert.Contains(t, a.body["error"], q.names, q.query)
	}
	assert.Equal(t, 405, call(t, "POST", srv.URL+"/v1/events", "").status)
	assert.Equal(t, 200, call(t, "GET", srv.URL+"/v1/events?limit=1024&wait=1s", "").status, "a wait without index does not block")
}

// refusingBinder is a node that refuses default reads, as one cut off
// from its leader does.
type refusingBinder struct{ httpapi.Binder }

func (refusingBinder) ReadAllowed() error { return binder.ErrStale }

// The history is this binder's own record: it is served while the binder
// refuses default reads, which is when an operator wants it most.
func TestEventsAreServedWhileDefaultReadsAreRefused(t *testing.T) {
	_, node := newAPIWith(t, nil)
	_, _, err := node.Register(t.Context(), binder.Registration{Type: "echo", Address: "127.0.0.1", Port: 1})
	require.NoError(t, err)
	srv := httptest.NewServer(httpapi.NewServer(refusingBinder{node}, nil))
	defer srv.Close()
	require.Equal(t, 503, call(t, "GET", srv.URL+"/v1/services", "").status)
	a := call(t, "GET", srv.URL+"/v1/events", "")
	require.Equal(t, 200, a.status, a.raw)
	assert.Len(t, eventList(t, a), 1)
	assert.Equal(t, 200, call(t, "GET", srv.URL+"/v1/cluster/status", "").status)
}

const (
	clusterToken = "c1c1c1c1c1c1c1c1c1"
	readToken    = "r1r1r1r1r1r1r1r1r1"
)

func authReads(t testing.TB) *httpapi.Auth {
	a, err := httpapi.ParseTokens(strings.NewReader(clusterToken + " cluster\n" + readToken + " read\n"))
	require.NoError(t, err)
	a.AuthReads = true
	return a
}

func callWith(t *testing.T, url, token string) answer {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	require.NoError(t, decodeJSON(resp, &a.body))
	return a
}

// With --auth-reads both endpoints need a read token, like other reads.
func TestEventsAndClusterStatusNeedAReadTokenWithAuthReads(t *testing.T) {
	srv, _ := newAPIWith(t, func(*binder.Node) []httpapi.Option { return []httpapi.Option{httpapi.WithAuth(authReads(t))} })
	for _, path := range []string{"/v1/events", "/v1/events?index=0&wait=10ms", "/v1/cluster/status"} {
		no := callWith(t, srv.URL+path, "")
		assert.Equal(t, 401, no.status, path)
		assert.NotEmpty(t, no.body["error"], path)
		assert.Equal(t, 401, callWith(t, srv.URL+path, "wrongwrongwrongwrong").status, path)
		assert.Equal(t, 200, callWith(t, srv.URL+path, readToken).status, path)
	}
}
