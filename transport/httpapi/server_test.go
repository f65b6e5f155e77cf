package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/httpapi"
	"github.com/lieur/lieur/transport/raftnet"
	"github.com/lieur/lieur/transport/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newAPI serves the API of a real one-node cluster (real Raft, real bbolt
// files, real TCP) and waits until it leads and has caught up.
func newAPI(t testing.TB) *httptest.Server {
	srv, _ := newAPIWith(t, nil)
	return srv
}

// newAPIWith is newAPI with server options chosen once the node exists.
func newAPIWith(t testing.TB, options func(*binder.Node) []httpapi.Option) (*httptest.Server, *binder.Node) {
	t.Helper()
	stream, err := raftnet.Listen("127.0.0.1:0", "")
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	peer := httpapi.NewPeerClient()
	node, err := binder.New(binder.Config{
		ID: "n1", HTTPAddr: ln.Addr().String(), DataDir: t.TempDir(),
		Peers:  []binder.PeerAddr{{ID: "n1", RaftAddr: stream.Addr().String()}},
		Stream: stream, Peer: peer,
	})
	require.NoError(t, err)
	var opts []httpapi.Option
	if options != nil {
		opts = options(node)
	}
	srv := httptest.NewUnstartedServer(httpapi.NewServer(node, nil, opts...))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = node.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = node.Close()
		srv.Close()
		peer.Close()
	})
	await(t, "the single node to lead, catch up and name the cluster", func() bool {
		return node.IsLeader() && node.CaughtUp() && node.ClusterID() != ""
	})
	return srv, node
}

// await polls cond until it holds, failing after 10 s.
func await(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "timed out waiting for %s", what)
		time.Sleep(10 * time.Millisecond)
	}
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func call(t *testing.T, method, url, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(data)}
	_ = json.Unmarshal(data, &a.body)
	if resp.StatusCode/100 != 2 {
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"), "error body of %s %s", method, url)
		msg, ok := a.body["error"].(string)
		require.True(t, ok && msg != "", "error body %q has a message", data)
	}
	return a
}

func TestRegisterValidation(t *testing.T) {
	srv := newAPI(t)
	tests := []struct {
		name, body string
		status     int
		errHas     string
	}{
		{"valid", `{"type":"echo","address":"127.0.0.1","port":12347}`, 200, ""},
		{"valid with id and meta", `{"type":"echo","address":"h.example","port":1,"id":"e1","meta":{"k":"v"}}`, 200, ""},
		{"bad type", `{"type":"Echo!","address":"127.0.0.1","port":1}`, 400, "type"},
		{"bad address", `{"type":"echo","address":"not an address","port":1}`, 400, "address"},
		{"port zero", `{"type":"echo","address":"127.0.0.1","port":0}`, 400, "port"},
		{"port too big", `{"type":"echo","address":"127.0.0.1","port":65536}`, 400, "port"},
		{"port not a number", `{"type":"echo","address":"127.0.0.1","port":"80"}`, 400, "port"},
		{"port fraction", `{"type":"echo","address":"127.0.0.1","port":80.5}`, 400, "port"},
		{"unknown field", `{"type":"echo","address":"127.0.0.1","port":1,"color":"red"}`, 400, "unknown field"},
		{"valid ttl", `{"type":"echo","address":"127.0.0.1","port":2,"ttl":"10s"}`, 200, ""},
		{"ttl too short", `{"type":"echo","address":"127.0.0.1","port":3,"ttl":"500ms"}`, 400, "ttl"},
		{"ttl too long", `{"type":"echo","address":"127.0.0.1","port":3,"ttl":"2h"}`, 400, "ttl"},
		{"ttl not a duration", `{"type":"echo","address":"127.0.0.1","port":3,"ttl":"ten"}`, 400, "ttl"},
		{"bad JSON", `{"type":`, 400, "JSON"},
		{"empty body", ``, 400, "empty"},
		{"trailing data", `{"type":"echo","address":"127.0.0.1","port":1} {}`, 400, "after"},
		{"over 64 KiB", `{"type":"echo","address":"127.0.0.1","port":1,"meta":{"k":"` + strings.Repeat("a", 70000) + `"}}`, 400, "exceeds"},
		{"bad id", `{"type":"echo","address":"127.0.0.1","port":1,"id":"../x"}`, 400, "id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := call(t, "GET", srv.URL+"/v1/status", "").body["table_hash"]
			a := call(t, "POST", srv.URL+"/v1/services", tc.body)
			assert.Equal(t, tc.status, a.status, a.raw)
			if tc.errHas != "" {
				assert.Contains(t, a.body["error"], tc.errHas)
				assert.Equal(t, before, call(t, "GET", srv.URL+"/v1/status", "").body["table_hash"], "a refused request changes nothing")
			} else {
				assert.NotEmpty(t, a.body["id"])
				assert.NotZero(t, a.body["index"])
			}
		})
	}
}

func TestRoutingErrorsAreJSON(t *testing.T) {
	srv := newAPI(t)
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/nope", 404},
		{"GET", "/v1/lookup/", 404},
		{"PUT", "/v1/status", 405},
		{"POST", "/v1/lookup/echo", 405},
		{"PATCH", "/v1/services", 405},
		{"GET", "/v1/lookup/UPPER", 400},
		{"DELETE", "/v1/services/unknown-id", 404},
		{"DELETE", "/v1/cluster/members/nobody", 404},
		{"GET", "/v1/services?index=abc", 400},
		{"GET", "/v1/lookup/echo?wait=forever", 400},
		{"POST", "/v1/reports", 400},
	} {
		a := call(t, tc.method, srv.URL+tc.path, "")
		assert.Equal(t, tc.status, a.status, "%s %s: %s", tc.method, tc.path, a.raw)
	}
	a := call(t, "GET", srv.URL+"/v1/lookup/nope", "")
	assert.Equal(t, 404, a.status)
	assert.JSONEq(t, `{"error":"unknown service type \"nope\""}`, a.raw)
	assert.Equal(t, 200, call(t, "GET", srv.URL+"/healthz", "").status)
}

func TestLookupRegisterDeregister(t *testing.T) {
	srv := newAPI(t)
	reg := call(t, "POST", srv.URL+"/v1/services", `{"type":"echo","address":"127.0.0.1","port":12347,"meta":{"zone":"a"}}`)
	require.Equal(t, 200, reg.status)
	assert.Equal(t, "echo-127.0.0.1-12347", reg.body["id"])

	a := call(t, "GET", srv.URL+"/v1/lookup/echo", "")
	require.Equal(t, 200, a.status)
	assert.JSONEq(t, `{"id":"echo-127.0.0.1-12347","type":"echo","address":"127.0.0.1","port":12347,"meta":{"zone":"a"},"status":"passing"}`, a.raw)

	list := call(t, "GET", srv.URL+"/v1/services/echo", "")
	require.Equal(t, 200, list.status)
	idx := list.header.Get(wire.HeaderIndex)
	assert.Equal(t, strconv.FormatFloat(reg.body["index"].(float64), 'f', -1, 64), idx)

	del := call(t, "DELETE", srv.URL+"/v1/services/echo-127.0.0.1-12347", "")
	require.Equal(t, 200, del.status)
	assert.Greater(t, del.body["index"].(float64), reg.body["index"].(float64))
	assert.Equal(t, 404, call(t, "GET", srv.URL+"/v1/lookup/echo", "").status)
	gone := call(t, "GET", srv.URL+"/v1/services/echo", "")
	assert.Equal(t, 404, gone.status)
	assert.NotEqual(t, idx, gone.header.Get(wire.HeaderIndex), "the index of an emptied type still moves")
	assert.Equal(t, 404, call(t, "DELETE", srv.URL+"/v1/services/echo-127.0.0.1-12347", "").status)
}

func TestBlockingQueryAndWait(t *testing.T) {
	srv := newAPI(t)
	first := call(t, "GET", srv.URL+"/v1/services", "")
	idx := first.header.Get(wire.HeaderIndex)

	// A blocking query with a short wait and no change returns the same
	// index when the wait ends.
	same := call(t, "GET", srv.URL+"/v1/services?index="+idx+"&wait=100ms", "")
	assert.Equal(t, idx, same.header.Get(wire.HeaderIndex))

	blocked := make(chan answer, 1)
	go func() { blocked <- call(t, "GET", srv.URL+"/v1/services?index="+idx+"&wait=1m", "") }()
	waited := make(chan answer, 1)
	go func() { waited <- call(t, "GET", srv.URL+"/v1/lookup/late?wait=1m", "") }()

	reg := call(t, "POST", srv.URL+"/v1/services", `{"type":"late","address":"127.0.0.1","port":1}`)
	require.Equal(t, 200, reg.status)
	b := <-blocked
	assert.Equal(t, 200, b.status)
	assert.NotEqual(t, idx, b.header.Get(wire.HeaderIndex))
	assert.Len(t, b.body["services"], 1)
	w := <-waited
	assert.Equal(t, 200, w.status)
	assert.Equal(t, "late", w.body["type"])

	assert.Equal(t, 404, call(t, "GET", srv.URL+"/v1/lookup/never?wait=50ms", "").status)
}

func TestClusterAndStatus(t *testing.T) {
	srv := newAPI(t)
	st := call(t, "GET", srv.URL+"/v1/status", "")
	require.Equal(t, 200, st.status)
	for _, k := range []string{"id", "state", "leader", "term", "applied_index", "last_log_index", "services", "table_hash"} {
		assert.Contains(t, st.body, k)
	}
	assert.Equal(t, "leader", st.body["state"])
	var cl answer
	await(t, "the node to announce its address", func() bool {
		cl = call(t, "GET", srv.URL+"/v1/cluster", "")
		return cl.status == 200 && strings.Contains(cl.raw, `"http_addr":"127.0.0.1:`)
	})
	assert.Equal(t, "n1", cl.body["leader"])
	members := cl.body["members"].([]any)
	require.Len(t, members, 1)
	m := members[0].(map[string]any)
	assert.Equal(t, "leader", m["state"])
	assert.Equal(t, true, m["voter"])
	assert.NotEmpty(t, m["http_addr"])

	bad := call(t, "POST", srv.URL+"/v1/cluster/join", `{"id":"n2"}`)
	assert.Equal(t, 400, bad.status)
	self := call(t, "DELETE", srv.URL+"/v1/cluster/members/n1", "")
	assert.Equal(t, 400, self.status, "the leader cannot remove itself")
}

func TestDeregisterWithRequestIDIsIdempotent(t *testing.T) {
	srv := newAPI(t)
	require.Equal(t, 200, call(t, "POST", srv.URL+"/v1/services", `{"type":"echo","address":"127.0.0.1","port":1}`).status)
	del := func(rid string) answer {
		req, err := http.NewRequest("DELETE", srv.URL+"/v1/services/echo-127.0.0.1-1", nil)
		require.NoError(t, err)
		req.Header.Set(wire.HeaderRequestID, rid)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var body map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		return answer{status: resp.StatusCode, body: body}
	}
	require.Equal(t, 200, call(t, "POST", srv.URL+"/v1/services", `{"type":"echo","address":"127.0.0.1","port":2}`).status)
	first := del("req-1")
	require.Equal(t, 200, first.status)
	again := del("req-1")
	assert.Equal(t, 200, again.status, "a resend with the same request id answers like the first")
	assert.Equal(t, first.body["index"], again.body["index"])
	assert.Equal(t, 404, del("req-2").status, "another request id is another deregistration")
	assert.Equal(t, 400, del("bad id!").status)

	// The key of one deregistration does not answer for another instance.
	req, err := http.NewRequest("DELETE", srv.URL+"/v1/services/echo-127.0.0.1-2", nil)
	require.NoError(t, err)
	req.Header.Set(wire.HeaderRequestID, "req-1")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 400, resp.StatusCode, "a request id reused for another instance: %s", data)
	assert.Contains(t, string(data), "was used for")
	assert.Equal(t, 200, call(t, "GET", srv.URL+"/v1/services/echo", "").status, "echo-127.0.0.1-2 is still there")
}

func TestHeartbeat(t *testing.T) {
	srv := newAPI(t)
	require.Equal(t, 200, call(t, "POST", srv.URL+"/v1/services", `{"type":"echo","address":"127.0.0.1","port":1,"ttl":"1m"}`).status)
	require.Equal(t, 200, call(t, "POST", srv.URL+"/v1/services", `{"type":"echo","address":"127.0.0.1","port":2}`).status)
	assert.Equal(t, 200, call(t, "PUT", srv.URL+"/v1/services/echo-127.0.0.1-1/heartbeat", "").status)
	assert.Equal(t, 404, call(t, "PUT", srv.URL+"/v1/services/nobody/heartbeat", "").status, "404 tells the server to register again")
	assert.Equal(t, 400, call(t, "PUT", srv.URL+"/v1/services/echo-127.0.0.1-2/heartbeat", "").status, "no lease to renew")
	a := call(t, "GET", srv.URL+"/v1/services/echo", "")
	require.Equal(t, 200, a.status)
	assert.Contains(t, a.raw, `"ttl":"1m0s"`)
}

func TestMetricsEndpoint(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv, _ := newAPIWith(t, func(node *binder.Node) []httpapi.Option {
		reg.MustRegister(node.Collectors()...)
		return []httpapi.Option{httpapi.WithMetrics(reg)}
	})
	require.Equal(t, 200, call(t, "POST", srv.URL+"/v1/services", `{"type":"echo","address":"127.0.0.1","port":1}`).status)
	call(t, "GET", srv.URL+"/v1/lookup/echo", "")
	m := call(t, "GET", srv.URL+"/metrics", "")
	require.Equal(t, 200, m.status)
	for _, want := range []string{
		`lieur_http_requests_total{code="200",route="GET /v1/lookup/{type}"} 1`,
		`lieur_raft_state{state="leader"} 1`,
		`lieur_instances{type="echo"} 1`,
		`lieur_fsm_apply_seconds_count`,
		`lieur_raft_applied_index`,
		`lieur_raft_commit_index`,
		`lieur_raft_last_contact_seconds 0`,
		`lieur_waiters 0`,
	} {
		assert.Contains(t, m.raw, want)
	}
}

// Without --allow-origin no CORS header is ever sent and preflights are
// refused; an allowed origin gets its preflight answered and may read.
func TestCORSOnlyForAllowedOrigins(t *testing.T) {
	srv, _ := newAPIWith(t, func(*binder.Node) []httpapi.Option {
		return []httpapi.Option{httpapi.WithAllowedOrigins([]string{"https://ui.example"})}
	})
	send := func(method, origin string, header map[string]string) *http.Response {
		req, err := http.NewRequest(method, srv.URL+"/v1/services", nil)
		require.NoError(t, err)
		req.Header.Set("Origin", origin)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	preflight := map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}

	resp := send("OPTIONS", "https://evil.example", preflight)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
	resp = send("GET", "https://evil.example", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"), "the browser must keep the answer from the page")

	resp = send("OPTIONS", "https://ui.example", preflight)
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, "https://ui.example", resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Contains(t, resp.Header.Get("Access-Control-Allow-Headers"), "Content-Type")
	resp = send("GET", "https://ui.example", nil)
	assert.Equal(t, "https://ui.example", resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Contains(t, resp.Header.Get("Access-Control-Expose-Headers"), wire.HeaderIndex)

	// The default server sends none at all.
	plain := newAPI(t)
	req, err := http.NewRequest("OPTIONS", plain.URL+"/v1/services", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", "https://ui.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
}

// Concurrent registrations share log entries (the leader batches them).
// A blocking query that returns at index N holds every registration
// acknowledged at an index up to N: it never sees part of an entry.
func TestBlockingQueriesNeverSeeHalfAnEntry(t *testing.T) {
	srv := newAPI(t)
	const writers, each = 64, 8
	type ack struct {
		id    string
		index uint64
	}
	acks := make(chan ack, writers*each)
	type seen struct {
		index uint64
		ids   map[string]bool
	}
	var answers []seen
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		idx := "0"
		for {
			select {
			case <-stop:
				return
			default:
			}
			a := call(t, "GET", srv.URL+"/v1/services/burst?index="+idx+"&wait=200ms", "")
			idx = a.header.Get(wire.HeaderIndex)
			n, _ := strconv.ParseUint(idx, 10, 64)
			s := seen{index: n, ids: map[string]bool{}}
			if list, ok := a.body["services"].([]any); ok {
				for _, e := range list {
					s.ids[e.(map[string]any)["id"].(string)] = true
				}
			}
			answers = append(answers, s)
		}
	}()
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				id := fmt.Sprintf("b-%d-%d", w, i)
				a := call(t, "POST", srv.URL+"/v1/services", fmt.Sprintf(`{"id":%q,"type":"burst","address":"127.0.0.1","port":%d}`, id, 1000+w*each+i))
				if assert.Equal(t, 200, a.status, a.raw) {
					acks <- ack{id, uint64(a.body["index"].(float64))}
				}
			}
		}()
	}
	wg.Wait()
	close(acks)
	close(stop)
	<-watched

	byIndex := map[uint64][]string{}
	for a := range acks {
		byIndex[a.index] = append(byIndex[a.index], a.id)
	}
	shared := 0
	for _, ids := range byIndex {
		if len(ids) > 1 {
			shared++
		}
	}
	require.Positive(t, shared, "no two registrations shared an entry: nothing was tested")
	for _, s := range answers {
		for idx, ids := range byIndex {
			if idx > s.index {
				continue
			}
			for _, id := range ids {
				require.True(t, s.ids[id], "an answer at index %d misses %s, acknowledged at index %d", s.index, id, idx)
			}
		}
	}
	t.Logf("%d registrations in %d entries (%d shared), %d watch answers", writers*each, len(byIndex), shared, len(answers))
}
