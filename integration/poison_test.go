package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/wire"
)

// Tokens of this file's clusters: their own names, so that this file does
// not depend on another test file's constants.
const (
	poisonAdminToken   = "poison-admin-token-0123456789"
	poisonClusterToken = "poison-cluster-token-0123456789"
	poisonEchoToken    = "poison-echo-token-0123456789"
)

// poisonTokenFile writes a token file of "TOKEN ROLE" lines and returns its
// path.
func poisonTokenFile(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	return path
}

// tokenReply is what a request got back.
type tokenReply struct {
	status int
	body   []byte
	err    wire.Error // decoded for a non-2xx answer
}

func (r tokenReply) String() string { return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body)) }

// tokenSend makes one request: body, when not empty, is sent as JSON; token,
// when not empty, as a bearer token; hdr adds headers. It does not use t,
// so that worker goroutines can call it.
func tokenSend(client *http.Client, method, url, token string, hdr http.Header, body string) (tokenReply, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return tokenReply{}, err
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return tokenReply{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return tokenReply{}, err
	}
	r := tokenReply{status: resp.StatusCode, body: data}
	if resp.StatusCode/100 != 2 {
		// Every error is a JSON body; one that is not stays visible in
		// r.body for the failure message.
		_ = json.Unmarshal(data, &r.err)
	}
	return r, nil
}

// tokenCall is tokenSend for the test goroutine: a transport error fails the test.
func tokenCall(t *testing.T, method, url, token string, hdr http.Header, body string) tokenReply {
	t.Helper()
	r, err := tokenSend(httpc, method, url, token, hdr, body)
	require.NoError(t, err, "%s %s", method, url)
	return r
}

// instanceOn returns instance id as node i's table holds it.
func instanceOn(t *testing.T, c *cluster, i int, id string) (wire.Instance, bool) {
	t.Helper()
	var resp wire.ServicesResponse
	code, err := getJSON(c.nodes[i].url()+"/v1/services", &resp)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	for _, s := range resp.Services {
		if s.ID == id {
			return s, true
		}
	}
	return wire.Instance{}, false
}

// assertServicesEverywhere checks, after convergence, that every running
// node serves n instances and the given table hash.
func assertServicesEverywhere(t *testing.T, c *cluster, n int, hash string) {
	t.Helper()
	for _, i := range c.running() {
		st, err := c.status(i)
		require.NoError(t, err)
		assert.Equal(t, n, st.Services, "services on %s", st.ID)
		assert.Equal(t, hash, st.TableHash, "table hash on %s", st.ID)
	}
}

// A register/v1 with an empty id reached the log before issue 9 through
// the internal endpoint, and every snapshot taken after it failed to
// restore: a node restarting or catching up through InstallSnapshot could
// no longer load the table. Now the leader refuses it with 400 before the
// log (and the FSM would refuse it too), so snapshots taken after a
// poisoning attempt restore, both sent to a lagging follower and read back
// by a restarted leader.
func TestPoisonedCommandIsRefusedAndSnapshotsStillRestore(t *testing.T) {
	const writes = 10000
	tokens := poisonTokenFile(t, poisonAdminToken+" admin", poisonClusterToken+" cluster")
	// Registrations are batched (tens per log entry at 32 writers), so the
	// threshold, in entries, must be small for the writes below to produce
	// snapshots and compact the log past the stopped follower.
	c := startCluster(t, 3, "--token-file", tokens, "--snapshot-threshold=128", "--trailing-logs=32", "--snapshot-interval=500ms")
	leader := c.leader()
	lagger := (leader + 1) % 3
	other := (leader + 2) % 3
	st, err := c.status(lagger)
	require.NoError(t, err)
	stoppedAt := st.LastLogIndex
	c.stop(lagger)

	poison := `{"type":"register/v1","body":{"id":"","type":"echo","address":"127.0.0.1","port":1}}`
	valid := `{"type":"register/v1","body":{"id":"valid-beside-poison","type":"echo","address":"127.0.0.1","port":2}}`
	apply := c.nodes[leader].url() + "/v1/internal/apply"
	// assert, not require: on code without the fix the test goes on to
	// show what the accepted command does to snapshots.
	r := tokenCall(t, http.MethodPost, apply, poisonClusterToken, nil, `{"command":`+poison+`}`)
	assert.Equal(t, http.StatusBadRequest, r.status, "poisoned command alone: %s", r)
	assert.Contains(t, r.err.Error, `id ""`, "the error names the field")
	r = tokenCall(t, http.MethodPost, apply, poisonClusterToken, nil, `{"commands":[`+poison+`,`+valid+`]}`)
	require.Equal(t, http.StatusOK, r.status, "batch: %s", r)
	var batch wire.ApplyBatchResponse
	require.NoError(t, json.Unmarshal(r.body, &batch))
	require.Len(t, batch.Results, 2, "batch: %s", r)
	assert.Equal(t, http.StatusBadRequest, batch.Results[0].Status, "poisoned command of a batch: %+v", batch.Results[0])
	assert.Contains(t, batch.Results[0].Error, `id ""`, "the error names the field")
	assert.Equal(t, http.StatusOK, batch.Results[1].Status, "valid command of a batch: %+v", batch.Results[1])
	assert.NotZero(t, batch.Results[1].Index)

	// Many writes through both running nodes (the follower forwards), so
	// that snapshots are taken and the log compacted past the lagger.
	bulk := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	t.Cleanup(bulk.CloseIdleConnections)
	targets := []string{c.nodes[leader].url() + "/v1/services", c.nodes[other].url() + "/v1/services"}
	var acked atomic.Int64
	var failMu sync.Mutex
	var failures []string
	start := time.Now()
	forEachConcurrently(0, writes, 32, func(i int) {
		body := fmt.Sprintf(`{"id":"bulk-%05d","type":"bulk","address":"127.0.0.1","port":%d}`, i, 1+i)
		r, err := tokenSend(bulk, http.MethodPost, targets[i%2], poisonAdminToken, nil, body)
		if err == nil && r.status == http.StatusOK {
			acked.Add(1)
			return
		}
		failMu.Lock()
		if len(failures) < 5 {
			failures = append(failures, fmt.Sprintf("bulk-%05d: %v %s", i, err, r))
		}
		failMu.Unlock()
	})
	t.Logf("%d registrations acknowledged in %s", acked.Load(), time.Since(start).Round(time.Millisecond))
	require.EqualValues(t, writes, acked.Load(), "every registration is acknowledged; first failures: %v", failures)

	// The lagger needs InstallSnapshot only once the leader has dropped
	// the entries after the last one it holds.
	compacted := regexp.MustCompile(`compacting logs: from=\d+ to=(\d+)`)
	waitFor(t, 30*time.Second, "the leader to compact its log past the stopped follower", func() (bool, string) {
		for _, m := range compacted.FindAllStringSubmatch(c.logSinceStart(leader), -1) {
			if to, _ := strconv.ParseUint(m[1], 10, 64); to > stoppedAt {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no compaction past index %d", stoppedAt)
	})

	c.restart(lagger)
	c.waitReady()
	hash := c.waitConverged()
	log := c.logSinceStart(lagger)
	assert.Contains(t, log, "Installed remote snapshot", "the restarted follower caught up through InstallSnapshot")
	assert.NotContains(t, log, "failed to restore snapshot")
	assertServicesEverywhere(t, c, writes+1, hash)
	_, ok := instanceOn(t, c, lagger, "valid-beside-poison")
	assert.True(t, ok, "the valid command of the batch reached the follower through the snapshot")

	// The leader restarts from its own snapshot, then replays its log.
	c.stop(leader)
	c.waitReady()
	c.restart(leader)
	c.waitReady()
	assert.Equal(t, hash, c.waitConverged(), "the table is the same after the leader's restart")
	log = c.logSinceStart(leader)
	assert.Contains(t, log, "restored from snapshot", "the restarted leader loaded its own snapshot")
	assert.NotContains(t, log, "failed to restore snapshot")
	assertServicesEverywhere(t, c, writes+1, hash)
}

// Without a token file the internal endpoints answer only callers that
// carry the cluster's id, which a stranger on the network does not know;
// binders themselves still forward writes to the leader with it.
func TestStrangerCannotCallInternalEndpoints(t *testing.T) {
	c := startCluster(t, 3)
	c.register(c.leader(), "echo", 4100)
	// The first leader commits the id once every member has announced a
	// build that knows it (log format 2).
	waitFor(t, 20*time.Second, "every node to know the cluster id", func() (bool, string) {
		for i := range c.nodes {
			st, err := c.status(i)
			if err != nil || !st.ClusterIDKnown || st.LogFormat < 2 {
				return false, fmt.Sprintf("%s: %+v %v", c.nodes[i].id, st, err)
			}
		}
		return true, ""
	})
	before := c.waitConverged()
	// A valid command: only the missing credential stands in its way.
	cmd := `{"command":{"type":"register/v1","body":{"id":"stranger","type":"echo","address":"127.0.0.1","port":4101}}}`
	for i := range c.nodes {
		for _, tc := range []struct {
			name string
			hdr  http.Header
		}{
			{"no cluster id", nil},
			{"an empty cluster id", http.Header{wire.HeaderCluster: {""}}},
			{"a wrong cluster id", http.Header{wire.HeaderCluster: {"not-this-cluster-0123456789"}}},
		} {
			r := tokenCall(t, http.MethodPost, c.nodes[i].url()+"/v1/internal/apply", "", tc.hdr, cmd)
			assert.Equal(t, http.StatusForbidden, r.status, "%s: apply with %s: %s", c.nodes[i].id, tc.name, r)
			assert.Equal(t, wire.CodeNotCluster, r.err.Code, "%s: apply with %s: %s", c.nodes[i].id, tc.name, r)
			r = tokenCall(t, http.MethodGet, c.nodes[i].url()+"/v1/internal/read-index", "", tc.hdr, "")
			assert.Equal(t, http.StatusForbidden, r.status, "%s: read-index with %s: %s", c.nodes[i].id, tc.name, r)
			assert.Equal(t, wire.CodeNotCluster, r.err.Code, "%s: read-index with %s: %s", c.nodes[i].id, tc.name, r)
		}
	}
	// last_log_index may move with the cluster's own entries; the table
	// may not.
	assertServicesEverywhere(t, c, 1, before)
	for i := range c.nodes {
		_, ok := instanceOn(t, c, i, "stranger")
		assert.False(t, ok, "%s holds the stranger's registration", c.nodes[i].id)
	}

	// Followers forward writes to the leader's internal endpoint with the
	// cluster id: that path still works.
	leader := c.leader()
	for i := range c.nodes {
		if i != leader {
			c.register(i, "echo", 4200+i)
		}
	}
	assertServicesEverywhere(t, c, 3, c.waitConverged())
}

// A register token bound to types may not touch an id the table holds
// under another type, whichever node receives the request: the leader's
// table decides, and the table is unchanged.
func TestTypeBoundTokenCannotTouchAnotherType(t *testing.T) {
	tokens := poisonTokenFile(t, poisonAdminToken+" admin", poisonClusterToken+" cluster", poisonEchoToken+" register:echo")
	c := startCluster(t, 3, "--token-file", tokens)
	leader := c.leader()
	// A long TTL: the lease must not lapse during the test, only be one
	// that heartbeats could renew.
	r := tokenCall(t, http.MethodPost, c.nodes[leader].url()+"/v1/services", poisonAdminToken, nil,
		`{"id":"d1","type":"db","address":"127.0.0.1","port":5432,"ttl":"10m"}`)
	require.Equal(t, http.StatusOK, r.status, "register d1: %s", r)
	before := c.waitConverged()

	for i := range c.nodes {
		for _, op := range []struct {
			name, method, path, body string
		}{
			{"register over d1 as echo", http.MethodPost, "/v1/services", `{"id":"d1","type":"echo","address":"127.0.0.1","port":7}`},
			{"deregister d1", http.MethodDelete, "/v1/services/d1", ""},
			{"heartbeat d1", http.MethodPut, "/v1/services/d1/heartbeat", ""},
		} {
			r := tokenCall(t, op.method, c.nodes[i].url()+op.path, poisonEchoToken, nil, op.body)
			assert.Equal(t, http.StatusForbidden, r.status, "%s on %s: %s", op.name, c.nodes[i].id, r)
			assert.Equal(t, wire.CodeForbidden, r.err.Code, "%s on %s: %s", op.name, c.nodes[i].id, r)
			// A refused register still takes a log entry (the leader's
			// table refuses it when applying); wait for every node to
			// apply it before comparing.
			assert.Equal(t, before, c.waitConverged(), "table after %s on %s", op.name, c.nodes[i].id)
			for j := range c.nodes {
				inst, ok := instanceOn(t, c, j, "d1")
				if assert.True(t, ok, "%s lost d1 after %s on %s", c.nodes[j].id, op.name, c.nodes[i].id) {
					assert.Equal(t, "db", inst.Type, "d1's type on %s after %s on %s", c.nodes[j].id, op.name, c.nodes[i].id)
				}
			}
		}
	}
	assertServicesEverywhere(t, c, 1, before)

	// The echo token still does everything to its own type, through a
	// follower.
	follower := c.nodes[(c.leader()+1)%3].url()
	r = tokenCall(t, http.MethodPost, follower+"/v1/services", poisonEchoToken, nil,
		`{"id":"e1","type":"echo","address":"127.0.0.1","port":5001,"ttl":"10m"}`)
	require.Equal(t, http.StatusOK, r.status, "register e1: %s", r)
	r = tokenCall(t, http.MethodPut, follower+"/v1/services/e1/heartbeat", poisonEchoToken, nil, "")
	assert.Equal(t, http.StatusOK, r.status, "heartbeat e1: %s", r)
	r = tokenCall(t, http.MethodDelete, follower+"/v1/services/e1", poisonEchoToken, nil, "")
	assert.Equal(t, http.StatusOK, r.status, "deregister e1: %s", r)
	assert.Equal(t, before, c.waitConverged(), "only d1 is left")
}
