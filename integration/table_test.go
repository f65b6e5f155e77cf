package integration

// One test per row of the original assignment's test table (rows 1, 2 and 4
// use the client library or `lieur dev` and live in their own files).

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/wire"
)

// Row 3, first case: a binder started after a registration learns it.
// n1 runs alone; a server registers; n2 and n3 join through n1 and each
// serves the service and logs it.
func TestRow3LateBindersJoinAndCatchUp(t *testing.T) {
	c := newCluster(t, 3)
	c.startPeers(0, c.nodes[0].id+"="+c.nodes[0].raftAddr)
	c.waitReady()
	id := c.register(0, "echo", 12347)
	require.Equal(t, "echo-127.0.0.1-12347", id)

	c.startJoin(1, c.nodes[0].url())
	c.startJoin(2, c.nodes[0].url())
	c.waitReady()
	var cl wire.ClusterResponse
	_, err := getJSON(c.nodes[2].url()+"/v1/cluster", &cl)
	require.NoError(t, err)
	require.Len(t, cl.Members, 3)
	for _, m := range cl.Members {
		assert.True(t, m.Voter, "%s is a voter", m.ID)
	}
	c.waitConverged()
	for i := 1; i < 3; i++ {
		assert.Equal(t, []string{id}, c.servicesAt(i), "node %s serves the service", c.nodes[i].id)
		assert.Contains(t, c.logOf(i), "new service: id=echo-127.0.0.1-12347 type=echo addr=127.0.0.1:12347")
	}
	var inst wire.Instance
	code, err := getJSON(c.nodes[2].url()+"/v1/lookup/echo", &inst)
	require.NoError(t, err)
	require.Equal(t, 200, code)
	assert.Equal(t, 12347, inst.Port)

	// A node that joined resumes from its own state on restart: it must not
	// ask to join again (that would replace its membership) nor bootstrap.
	c.kill(2)
	c.restart(2)
	c.waitReady()
	c.waitConverged()
	assert.Equal(t, 1, strings.Count(c.logOf(2), "joined cluster"), "a restarted node resumes instead of joining again")
}

// Row 3, second case: a node killed while registrations continue catches
// up from its data dir, through log replay or InstallSnapshot.
func TestRow3KilledBinderCatchesUpOnRestart(t *testing.T) {
	// Snapshot often and keep few trailing entries, so the restarted node
	// is behind the leader's compacted log and needs a snapshot.
	c := startCluster(t, 3, "--snapshot-threshold=32", "--trailing-logs=8", "--snapshot-interval=200ms")
	first := c.register(0, "echo", 10000)
	victim := (c.leader() + 1) % 3
	c.kill(victim)
	other := (victim + 1) % 3
	var ids []string
	for i := 0; i < 120; i++ {
		ids = append(ids, c.register(other, "bulk", 20000+i))
	}
	c.restart(victim)
	c.waitReady()
	c.waitConverged()
	served := c.servicesAt(victim)
	assert.Len(t, served, 121)
	assert.Contains(t, served, first)
	log := c.logSinceStart(victim)
	for _, id := range ids {
		require.Contains(t, log, "new service: id="+id+" ", "the late node logs every service it learned")
	}
}

// Row 3, third case: a node whose data dir was lost comes back through
// --join under its old id; the leader replaces its old membership, and the
// node never bootstraps a second time.
func TestRow3WipedBinderRejoins(t *testing.T) {
	c := startCluster(t, 3)
	id := c.register(0, "echo", 12347)
	victim := (c.leader() + 1) % 3
	c.kill(victim)
	c.register((victim+1)%3, "time", 12348)
	require.NoError(t, removeAll(c.nodes[victim].dataDir))
	other := (victim + 1) % 3
	c.startJoin(victim, c.nodes[other].url())
	c.waitReady()
	c.waitConverged()
	assert.ElementsMatch(t, []string{id, "time-127.0.0.1-12348"}, c.servicesAt(victim))
	log := c.logSinceStart(victim)
	assert.Contains(t, log, "new service: id=echo-127.0.0.1-12347 type=echo addr=127.0.0.1:12347")
	assert.NotContains(t, log, "bootstrapped cluster")
	var cl wire.ClusterResponse
	_, err := getJSON(c.nodes[other].url()+"/v1/cluster", &cl)
	require.NoError(t, err)
	assert.Len(t, cl.Members, 3, "the old membership was replaced, not duplicated")
	leaderLog := c.logOf(c.leader())
	assert.Contains(t, leaderLog, "replacing old membership")

	// The cluster still makes progress with the rejoined node as a voter:
	// stop another node and write.
	c.kill((victim + 1) % 3)
	c.waitReady()
	c.register(victim, "after", 12349)
}

// Row 5: the binder answers only for existing services.
func TestRow5UnknownTypeIs404(t *testing.T) {
	c := startCluster(t, 3)
	c.register(0, "echo", 12347)
	for i := range c.nodes {
		var e wire.Error
		code, err := getJSON(c.nodes[i].url()+"/v1/lookup/nope", &e)
		require.NoError(t, err)
		assert.Equal(t, http.StatusNotFound, code)
		assert.Equal(t, `unknown service type "nope"`, e.Error)
		code, err = getJSON(c.nodes[i].url()+"/v1/services/nope", &e)
		require.NoError(t, err)
		assert.Equal(t, http.StatusNotFound, code)
		assert.Equal(t, `unknown service type "nope"`, e.Error)
	}
	// A type that once existed and is gone is unknown again.
	code, err := doJSON(http.MethodDelete, c.nodes[1].url()+"/v1/services/echo-127.0.0.1-12347", nil)
	require.NoError(t, err)
	require.Equal(t, 200, code)
	code, err = getJSON(c.nodes[1].url()+"/v1/lookup/echo", nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusNotFound, code)
}

// Rows 6 and 7: a client reports an unreachable server; the binder
// verifies, removes it, and every binder's table agrees. A report of a
// server that answers keeps it.
func TestRow6And7ReportRemovesEverywhere(t *testing.T) {
	c := startCluster(t, 3)
	livePort, _ := liveServer(t)
	alive := c.register(0, "echo", livePort)
	dead := c.register(0, "echo", deadPort(t))
	before := c.waitConverged()

	for _, reportAt := range []int{1, 2} {
		var rr wire.ReportResponse
		code, err := postJSON(c.nodes[reportAt].url()+"/v1/reports", wire.ReportRequest{ID: alive}, &rr)
		require.NoError(t, err)
		require.Equal(t, 200, code)
		assert.Equal(t, wire.VerdictAlive, rr.Verdict)
	}
	assert.Equal(t, before, c.waitConverged(), "an alive verdict changes nothing")

	var rr wire.ReportResponse
	code, err := postJSON(c.nodes[2].url()+"/v1/reports", wire.ReportRequest{ID: dead}, &rr)
	require.NoError(t, err)
	require.Equal(t, 200, code)
	assert.Equal(t, dead, rr.ID)
	assert.Equal(t, wire.VerdictRemoved, rr.Verdict)
	assert.NotZero(t, rr.Index, "a removal names the index that committed it")

	after := c.waitConverged()
	assert.NotEqual(t, before, after)
	for i := range c.nodes {
		assert.Equal(t, []string{alive}, c.servicesAt(i), "node %s", c.nodes[i].id)
		assert.Contains(t, c.logOf(i), "removed service: id="+dead+" reason=reported-down")
	}

	var e wire.Error
	code, err = postJSON(c.nodes[0].url()+"/v1/reports", wire.ReportRequest{ID: "never-registered"}, &e)
	require.NoError(t, err)
	assert.Equal(t, http.StatusNotFound, code)
}

// Row 8: round-robin. Three servers of one type, 300 lookups at one node:
// exactly 100 each.
func TestRow8RoundRobin(t *testing.T) {
	c := startCluster(t, 3)
	for p := 0; p < 3; p++ {
		c.register(0, "echo", 13000+p)
	}
	c.waitConverged()
	for _, at := range []int{0, 2} {
		counts := map[int]int{}
		for i := 0; i < 300; i++ {
			var inst wire.Instance
			code, err := getJSON(c.nodes[at].url()+"/v1/lookup/echo", &inst)
			require.NoError(t, err)
			require.Equal(t, 200, code)
			counts[inst.Port]++
		}
		assert.Equal(t, map[int]int{13000: 100, 13001: 100, 13002: 100}, counts, "lookups at %s", c.nodes[at].id)
	}
}

// Row 9: two clients report the same server down one second apart. Nothing
// crashes, both verdicts are coherent, and the binder keeps answering.
func TestRow9TwoReportsOneSecondApart(t *testing.T) {
	c := startCluster(t, 3)
	for _, tc := range []struct {
		name    string
		port    func() int
		verdict string
	}{
		{"server down", func() int { return deadPort(t) }, wire.VerdictRemoved},
		{"server up", func() int { p, _ := liveServer(t); return p }, wire.VerdictAlive},
		// The probe of a hanging server outlasts the second; the second
		// report joins the first's verification.
		{"server hanging", func() int { return hangingServer(t) }, wire.VerdictRemoved},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := c.register(0, "x"+strings.ReplaceAll(tc.name, " ", ""), tc.port())
			c.waitConverged()
			type answer struct {
				code int
				resp wire.ReportResponse
				err  error
			}
			answers := make(chan answer, 2)
			report := func() {
				var a answer
				a.code, a.err = postJSON(c.nodes[1].url()+"/v1/reports", wire.ReportRequest{ID: id}, &a.resp)
				answers <- a
			}
			go report()
			sleepScenario(t, "second client reports one second later")
			go report()
			for k := 0; k < 2; k++ {
				a := <-answers
				require.NoError(t, a.err)
				require.Equal(t, 200, a.code)
				assert.Equal(t, tc.verdict, a.resp.Verdict, "report %d", k+1)
			}
			st, err := c.status(1)
			require.NoError(t, err)
			assert.Equal(t, "n2", st.ID)
			c.waitConverged()
		})
	}
	for i := range c.nodes {
		assert.True(t, c.nodes[i].running(), "%s still runs", c.nodes[i].id)
		assert.Equal(t, 1, strings.Count(c.logOf(i), "removed service: id=xserverhanging-"), "one removal of the hanging server on %s", c.nodes[i].id)
	}
	assert.Equal(t, 1, strings.Count(c.logOf(1), "verifying report: id=xserverhanging"), "the two reports shared one verification")
}

// Row 10: a lookup while the binder verifies another service whose probe
// hangs answers at once.
func TestRow10LookupDuringHangingVerification(t *testing.T) {
	c := startCluster(t, 3)
	hung := c.register(0, "slow", hangingServer(t))
	livePort, _ := liveServer(t)
	c.register(0, "echo", livePort)
	c.waitConverged()

	reported := make(chan wire.ReportResponse, 1)
	go func() {
		var rr wire.ReportResponse
		_, _ = postJSON(c.nodes[1].url()+"/v1/reports", wire.ReportRequest{ID: hung}, &rr)
		reported <- rr
	}()
	waitFor(t, 10*time.Second, "the verification to start", func() (bool, string) {
		return strings.Contains(c.logOf(1), "verifying report: id="+hung), "no 'verifying report' line yet"
	})
	for i := 0; i < 20; i++ {
		var inst wire.Instance
		code, err := getJSON(c.nodes[1].url()+"/v1/lookup/echo", &inst)
		require.NoError(t, err)
		require.Equal(t, 200, code)
		assert.Equal(t, livePort, inst.Port)
		st, err := c.status(1)
		require.NoError(t, err)
		assert.Equal(t, 2, st.Services)
	}
	select {
	case rr := <-reported:
		t.Fatalf("the verification of a hanging server finished (%v) before 20 lookups: the test proves nothing", rr)
	default:
	}
	rr := <-reported
	assert.Equal(t, wire.VerdictRemoved, rr.Verdict)
}

// sleepScenario waits one second where the scenario itself says "one
// second later"; it is part of the stimulus, not a synchronisation.
func sleepScenario(t *testing.T, why string) {
	t.Logf("waiting 1s: %s", why)
	time.Sleep(time.Second)
}

func removeAll(dir string) error { return os.RemoveAll(dir) }
