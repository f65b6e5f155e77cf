package integration

// A default read is refused as stale only when the node has not heard from
// a leader for longer than --max-staleness, not merely because raft forgot
// the leader for the length of an election. These tests send raw HTTP
// default lookups, each to one node and never retried elsewhere, while
// leaders are killed and restarted: the surviving nodes must answer every
// one of them.

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/wire"
)

const (
	lookupWorkers = 4
	// A run with fewer answers than this did not exercise the elections.
	minLookups = 200
	maxSamples = 20
)

// lookupLoad sends default lookups of one type to random serving nodes and
// counts the answers.
type lookupLoad struct {
	t     *testing.T
	c     *cluster
	typ   string
	path  string
	tr    *http.Transport
	httpc *http.Client
	start time.Time

	// Held for reading from choosing a node until its answer is in, and
	// for writing to change who serves: once markDown returns, no request
	// is in flight to that node, so signalling it cannot fail one.
	mu      sync.RWMutex
	serving []bool

	quit     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	statsMu  sync.Mutex
	total    int
	perNode  map[string]map[string]int // node id -> outcome -> count
	failures int
	byKind   map[string]int
	samples  []string
}

func startLookupLoad(t *testing.T, c *cluster, typ string) *lookupLoad {
	tr := &http.Transport{MaxIdleConnsPerHost: lookupWorkers}
	l := &lookupLoad{
		t:       t,
		c:       c,
		typ:     typ,
		path:    "/v1/lookup/" + typ,
		tr:      tr,
		httpc:   &http.Client{Transport: tr, Timeout: 5 * time.Second},
		start:   time.Now(),
		serving: make([]bool, len(c.nodes)),
		quit:    make(chan struct{}),
		perNode: map[string]map[string]int{},
		byKind:  map[string]int{},
	}
	for i := range l.serving {
		l.serving[i] = true
		l.perNode[c.nodes[i].id] = map[string]int{}
	}
	// Registered after the cluster's own cleanup, so it runs first: the
	// workers are gone before a failed test's nodes are killed.
	t.Cleanup(l.stop)
	for w := 0; w < lookupWorkers; w++ {
		l.wg.Add(1)
		go l.worker()
	}
	return l
}

func (l *lookupLoad) worker() {
	defer l.wg.Done()
	for {
		select {
		case <-l.quit:
			return
		default:
		}
		l.once()
		// Pacing only: leaves the two cores to the agents' elections.
		time.Sleep(2 * time.Millisecond)
	}
}

func (l *lookupLoad) once() {
	l.mu.RLock()
	var up []int
	for i, s := range l.serving {
		if s {
			up = append(up, i)
		}
	}
	if len(up) == 0 {
		l.mu.RUnlock()
		return
	}
	i := up[rand.IntN(len(up))]
	status, body, err := l.get(l.c.nodes[i].url() + l.path)
	l.mu.RUnlock()
	l.record(l.c.nodes[i].id, status, body, err)
}

func (l *lookupLoad) get(url string) (int, []byte, error) {
	resp, err := l.httpc.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

func (l *lookupLoad) record(id string, status int, body []byte, err error) {
	at := time.Since(l.start).Round(time.Millisecond)
	kind := fmt.Sprint(status)
	detail := strings.TrimSpace(string(body))
	ok := false
	switch {
	case err != nil:
		kind, detail = "transport error", err.Error()
	case status == http.StatusOK:
		var inst wire.Instance
		ok = json.Unmarshal(body, &inst) == nil && inst.Type == l.typ && inst.ID != ""
		if !ok {
			kind += " without an instance"
		}
	default:
		var e wire.Error
		if json.Unmarshal(body, &e) == nil && e.Code != "" {
			kind += " " + e.Code
		}
	}
	l.statsMu.Lock()
	defer l.statsMu.Unlock()
	l.total++
	l.perNode[id][kind]++
	if ok {
		return
	}
	l.failures++
	l.byKind[kind]++
	if len(l.samples) < maxSamples {
		l.samples = append(l.samples, fmt.Sprintf("at %s %s: %s %s", at, id, kind, detail))
	}
}

// markDown takes node i out of the load; call it before signalling i.
func (l *lookupLoad) markDown(i int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.serving[i] = false
}

// markUp puts node i back; call it once i has caught up, since a restarted
// node rightly refuses default reads (catching_up) before that.
func (l *lookupLoad) markUp(i int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// An idle connection to the process that was stopped would fail its
	// next request in the transport, not in the binder.
	l.tr.CloseIdleConnections()
	l.serving[i] = true
}

func (l *lookupLoad) stop() {
	l.stopOnce.Do(func() {
		close(l.quit)
		l.wg.Wait()
		l.tr.CloseIdleConnections()
	})
}

// assertNoFailures stops the load and fails the test on any answer other
// than 200 from a serving node, or on too few answers to mean anything.
func (l *lookupLoad) assertNoFailures() {
	l.t.Helper()
	l.stop()
	l.statsMu.Lock()
	defer l.statsMu.Unlock()
	ids := make([]string, 0, len(l.perNode))
	for id := range l.perNode {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var per []string
	for _, id := range ids {
		per = append(per, fmt.Sprintf("%s %v", id, l.perNode[id]))
	}
	l.t.Logf("%d lookups in %s, %d failed; per node: %s", l.total, time.Since(l.start).Round(time.Millisecond), l.failures, strings.Join(per, "; "))
	if l.failures > 0 {
		l.t.Errorf("%d of %d default lookups to serving nodes failed %v; first %d:\n%s",
			l.failures, l.total, l.byKind, len(l.samples), strings.Join(l.samples, "\n"))
	}
	require.Greater(l.t, l.total, minLookups, "too few lookups for the test to mean anything")
}

// waitNewLeader waits until every running node names one leader other than
// the node that was stopped, and that node says it leads.
func waitNewLeader(t *testing.T, c *cluster, gone int) {
	t.Helper()
	waitFor(t, 20*time.Second, "survivors agree on a new leader", func() (bool, string) {
		leader, leads := "", false
		for _, i := range c.running() {
			st, err := c.status(i)
			if err != nil {
				return false, fmt.Sprintf("%s: %v", c.nodes[i].id, err)
			}
			if st.Leader == "" || st.Leader == c.nodes[gone].id || (leader != "" && st.Leader != leader) {
				return false, fmt.Sprintf("%s sees leader %q", st.ID, st.Leader)
			}
			leader = st.Leader
			leads = leads || (st.ID == leader && st.State == "leader")
		}
		return leads, fmt.Sprintf("no running node leads as %q", leader)
	})
}

func waitCaughtUp(t *testing.T, c *cluster, i int) {
	t.Helper()
	waitFor(t, 30*time.Second, c.nodes[i].id+" caught up", func() (bool, string) {
		st, err := c.status(i)
		if err != nil {
			return false, err.Error()
		}
		return st.CaughtUp, fmt.Sprintf("state %s, leader %q, applied %d", st.State, st.Leader, st.AppliedIndex)
	})
}

// startEchoCluster starts 3 nodes holding a few instances of "echo".
func startEchoCluster(t *testing.T) *cluster {
	c := startCluster(t, 3)
	for k, port := range freePorts(t, 3) {
		c.register(k%len(c.nodes), "echo", port)
	}
	c.waitConverged()
	return c
}

func TestRawLookupsAnswerThroughLeaderKills(t *testing.T) {
	c := startEchoCluster(t)
	load := startLookupLoad(t, c, "echo")
	for k := 0; k < 20; k++ {
		sig, stop := "SIGKILL", c.kill
		if k >= 10 {
			sig, stop = "SIGTERM", c.stop
		}
		v := c.leader()
		t.Logf("round %d at %s: %s leader %s", k+1, time.Since(load.start).Round(time.Millisecond), sig, c.nodes[v].id)
		load.markDown(v)
		stop(v)
		waitNewLeader(t, c, v)
		c.restart(v)
		waitCaughtUp(t, c, v)
		load.markUp(v)
	}
	c.waitReady()
	load.assertNoFailures()
	(&chaosRun{t: t, c: c}).checkLogs()
}

func TestRawLookupsAnswerThroughRollingRestart(t *testing.T) {
	c := startEchoCluster(t)
	load := startLookupLoad(t, c, "echo")
	for i := range c.nodes {
		t.Logf("at %s: SIGTERM %s", time.Since(load.start).Round(time.Millisecond), c.nodes[i].id)
		load.markDown(i)
		c.stop(i)
		c.restart(i)
		waitCaughtUp(t, c, i)
		load.markUp(i)
		c.waitReady()
	}
	load.assertNoFailures()
	(&chaosRun{t: t, c: c}).checkLogs()
}
