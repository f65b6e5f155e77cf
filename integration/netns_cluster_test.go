//go:build linux

package integration

// A 5-node cluster across five "hosts": each binder in a network namespace
// of its own with its own address on one bridged LAN (netnsLAN), and
// clients in a sixth namespace that reach the binders over that LAN with
// raw HTTP, as programs on other machines would. What it proves, one phase
// after the other on the same cluster:
//
//   - a rolling restart of all five (SIGTERM, the same binary again, wait
//     until caught up, next) under continuous default lookups and
//     registrations: no failed lookup, no acknowledged registration lost;
//   - the same rolling restart into another build of lieur, so that the
//     cluster serves with old and new builds side by side;
//   - one host's link cut, a follower's then the leader's: the majority
//     keeps writing, the cut binder refuses default reads once
//     --max-staleness has passed without a leader (not before), and
//     agrees with the others within 2 s of the link's return;
//   - a binder whose disk is wiped comes back under its id with --join; a
//     non-voter joins, catches up and is promoted; a voter that dies is
//     removed by the leader after --cleanup-dead-after.
//
// `make netns` runs it alone; `make test` runs it when the machine allows
// (root, iproute2, namespaces), and skips it saying why otherwise.

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/wire"
)

const (
	nsRaftPort = 7000
	nsHTTPPort = 8000
	// nsMaxStaleness is the agents' --max-staleness.
	nsMaxStaleness = 2 * time.Second
	// nsCleanupDeadAfter is the agents' --cleanup-dead-after: longer than
	// any binder is meant to be away here (a restart, the link cut), so
	// only the voter killed for good is removed.
	nsCleanupDeadAfter = 10 * time.Second
	// nsAgreeBound is the bound: a binder whose link comes back
	// agrees with the others within it.
	nsAgreeBound = 2 * time.Second
	// nsNextVersion is the version string of the second build.
	nsNextVersion = "netns-next"
)

// nsNode is one binder of the cluster: its id, host, data dir and Raft
// state stay across restarts; the binary it runs may change.
type nsNode struct {
	id      string
	host    *netnsHost
	dataDir string
	bin     string
	mode    []string // --peers ... or --join ...
	starts  int
	proc    *bgProcess // nil before the first start
}

func (n *nsNode) url() string      { return fmt.Sprintf("http://%s:%d", n.host.Addr(), nsHTTPPort) }
func (n *nsNode) raftAddr() string { return fmt.Sprintf("%s:%d", n.host.Addr(), nsRaftPort) }
func (n *nsNode) running() bool    { return n.proc != nil && !n.proc.exited() }

// nsCluster is the binders, and a client host from which the test talks
// to them.
type nsCluster struct {
	t      *testing.T
	dir    string
	lan    *netnsLAN
	client *netnsHost
	http   *http.Client // its connections are opened on the client host
	nodes  []*nsNode
	flags  []string // given to every agent
	logs   []string // every agent log, for the final check
	cut    *nsNode  // the node whose link is cut, if any: out of reach
}

func newNsCluster(t *testing.T, lan *netnsLAN, n int) *nsCluster {
	t.Helper()
	c := &nsCluster{t: t, dir: t.TempDir(), lan: lan}
	for i := 0; i < n; i++ {
		c.addNode()
	}
	c.client = lan.AddHost()
	c.http = nsHTTPClient(c.client)
	c.flags = append(append([]string{}, fastFlags...),
		"--max-staleness="+nsMaxStaleness.String(),
		// Snapshots and log compaction every few hundred writes: a
		// restarted or wiped binder catches up through InstallSnapshot.
		"--snapshot-threshold=256", "--snapshot-interval=1s", "--trailing-logs=64",
		"--cleanup-dead-after="+nsCleanupDeadAfter.String())
	return c
}

// nsHTTPClient is a client whose connections are opened from host h, one
// connection per request (a binder that restarts leaves no idle
// connection behind to fail a later request).
func nsHTTPClient(h *netnsHost) *http.Client {
	return &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: h.DialContext, DisableKeepAlives: true}}
}

// addNode gives the next node a host of its own.
func (c *nsCluster) addNode() *nsNode {
	id := fmt.Sprintf("n%d", len(c.nodes)+1)
	n := &nsNode{id: id, host: c.lan.AddHost(), dataDir: filepath.Join(c.dir, id), bin: lieurBin}
	c.nodes = append(c.nodes, n)
	return n
}

func (c *nsCluster) peers() string {
	var p []string
	for _, n := range c.nodes {
		p = append(p, n.id+"="+n.raftAddr())
	}
	return strings.Join(p, ",")
}

// start starts n (again) inside its host with n.bin and n.mode, and waits
// until it serves HTTP on its address.
func (c *nsCluster) start(n *nsNode) {
	c.t.Helper()
	n.starts++
	logPath := filepath.Join(c.dir, fmt.Sprintf("%s.%d.log", n.id, n.starts))
	c.logs = append(c.logs, logPath)
	args := append([]string{"agent", "--id", n.id, "--raft-addr", n.raftAddr(),
		"--http-addr", fmt.Sprintf("%s:%d", n.host.Addr(), nsHTTPPort), "--data-dir", n.dataDir}, n.mode...)
	n.proc = n.host.Start(logPath, n.bin, append(args, c.flags...)...)
	waitFor(c.t, 30*time.Second, n.id+" serves HTTP on "+n.host.Addr(), func() (bool, string) {
		if n.proc.exited() {
			c.t.Fatalf("%s exited at start; see its log", n.id)
		}
		code, err := c.get(n, "/healthz", nil)
		return code == http.StatusOK, fmt.Sprintf("healthz %d %v", code, err)
	})
}

// stop sends n SIGTERM and waits for it to exit.
func (c *nsCluster) stop(n *nsNode) {
	c.t.Helper()
	if err := n.proc.stop(20 * time.Second); err != nil {
		c.t.Errorf("%s: %v", n.id, err)
	}
}

// nsGet GETs a binder's path with client cl and decodes a 2xx body into
// out (when not nil); it returns the status, or 0 and the error.
func nsGet(cl *http.Client, url string, out any) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, err
	}
	return decode(resp, out)
}

// get asks n from the client host.
func (c *nsCluster) get(n *nsNode, path string, out any) (int, error) {
	return nsGet(c.http, n.url()+path, out)
}

func (c *nsCluster) status(n *nsNode) (wire.Status, error) {
	var st wire.Status
	code, err := c.get(n, "/v1/status", &st)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("status %d", code)
	}
	return st, err
}

// live is the nodes whose process runs, and that the client host can
// reach.
func (c *nsCluster) live() []*nsNode {
	var out []*nsNode
	for _, n := range c.nodes {
		if n.running() && n != c.cut {
			out = append(out, n)
		}
	}
	return out
}

// waitReady waits until every running node is caught up and names the
// same leader, which is a running node that says it leads, and every
// member's HTTP address is known.
func (c *nsCluster) waitReady() *nsNode {
	c.t.Helper()
	var leader *nsNode
	waitFor(c.t, 30*time.Second, "every binder caught up under one leader", func() (bool, string) {
		name := ""
		for _, n := range c.live() {
			st, err := c.status(n)
			if err != nil {
				return false, fmt.Sprintf("%s: %v", n.id, err)
			}
			if st.Leader == "" || (name != "" && st.Leader != name) || !st.CaughtUp {
				return false, fmt.Sprintf("%s: leader %q, caught up %v", n.id, st.Leader, st.CaughtUp)
			}
			name = st.Leader
		}
		leader = c.node(name)
		if leader == nil || !leader.running() {
			return false, fmt.Sprintf("leader %q is not a running node", name)
		}
		if st, err := c.status(leader); err != nil || st.State != "leader" {
			return false, fmt.Sprintf("%s does not lead (%s, %v)", name, st.State, err)
		}
		cl, err := c.cluster(leader)
		if err != nil {
			return false, err.Error()
		}
		for _, m := range cl.Members {
			if m.HTTPAddr == "" {
				return false, fmt.Sprintf("%s's http address unknown", m.ID)
			}
		}
		return true, ""
	})
	return leader
}

func (c *nsCluster) node(id string) *nsNode {
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	return nil
}

func (c *nsCluster) cluster(n *nsNode) (wire.ClusterResponse, error) {
	var cl wire.ClusterResponse
	code, err := c.get(n, "/v1/cluster", &cl)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("%s: cluster: status %d", n.id, code)
	}
	return cl, err
}

// waitCaughtUp waits until n says it has applied what its leader had.
func (c *nsCluster) waitCaughtUp(n *nsNode) {
	c.t.Helper()
	waitFor(c.t, 30*time.Second, n.id+" caught up", func() (bool, string) {
		st, err := c.status(n)
		if err != nil {
			return false, err.Error()
		}
		return st.CaughtUp && st.Leader != "", fmt.Sprintf("state %s, leader %q, applied %d", st.State, st.Leader, st.AppliedIndex)
	})
}

// waitConverged waits until every running node has applied the same index
// and holds the same table.
func (c *nsCluster) waitConverged() {
	c.t.Helper()
	waitFor(c.t, 30*time.Second, "every binder at the same index and table", func() (bool, string) {
		var first *wire.Status
		for _, n := range c.live() {
			st, err := c.status(n)
			if err != nil {
				return false, fmt.Sprintf("%s: %v", n.id, err)
			}
			if first == nil {
				first = &st
			} else if st.AppliedIndex != first.AppliedIndex || st.TableHash != first.TableHash {
				return false, fmt.Sprintf("%s at %d/%.8s, %s at %d/%.8s", first.ID, first.AppliedIndex, first.TableHash, st.ID, st.AppliedIndex, st.TableHash)
			}
		}
		return true, ""
	})
}

// members is the configuration as n reports it: id -> voter.
func (c *nsCluster) members(n *nsNode) (map[string]bool, error) {
	cl, err := c.cluster(n)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, m := range cl.Members {
		out[m.ID] = m.Voter
	}
	return out, nil
}

// ids returns the ids of typ's instances that n serves (a default read).
func (c *nsCluster) ids(n *nsNode, typ string) (map[string]bool, error) {
	var resp wire.ServicesResponse
	code, err := c.get(n, "/v1/services/"+typ, &resp)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("%s: services/%s: status %d", n.id, typ, code)
	}
	out := map[string]bool{}
	for _, s := range resp.Services {
		out[s.ID] = true
	}
	return out, err
}

// exe is the binary n's process runs, as the kernel knows it.
func (n *nsNode) exe() string {
	p, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", n.proc.pid()))
	if err != nil {
		return "?" + err.Error()
	}
	return p
}

// ---- load: raw HTTP from the client host ----

// nsLoad sends default lookups and registrations from the client host,
// each to a binder picked at random, as lieur's clients do: when that
// binder cannot be reached, or answers 503 (catching up, shutting down),
// the same request goes to another one.
//
// Only the binder being restarted may fail that way: a lookup counts as
// failed when no binder answered it, when any binder answered anything
// but 200 with an instance, or when a binder outside its restart window
// did not answer. A registration is acknowledged by a 200; it is retried
// (with its id, so idempotent) elsewhere after a connection failure or a
// 503, and counted unacknowledged when no binder acknowledged it.
type nsLoad struct {
	t     *testing.T
	c     *nsCluster
	nodes []*nsNode
	http  *http.Client
	start time.Time
	quit  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
	seq   *atomic.Int64 // registration numbers, shared by every load of a test

	mu          sync.Mutex
	restarting  map[string]bool
	lookups     int
	failed      int
	failovers   map[string]int // "node kind" -> count
	samples     []string
	perNode     map[string]int // lookups answered, by node
	acked       []string
	unacked     int
	regRetries  map[string]int
	regFailures []string
}

const (
	nsLookupWorkers   = 3
	nsRegisterWorkers = 2
)

func startNsLoad(t *testing.T, c *nsCluster, seq *atomic.Int64) *nsLoad {
	l := &nsLoad{t: t, c: c, nodes: slices.Clone(c.nodes), http: nsHTTPClient(c.client), start: time.Now(),
		quit: make(chan struct{}), seq: seq, restarting: map[string]bool{},
		failovers: map[string]int{}, perNode: map[string]int{}, regRetries: map[string]int{}}
	for w := 0; w < nsLookupWorkers; w++ {
		l.wg.Add(1)
		go l.loop(l.lookup)
	}
	for w := 0; w < nsRegisterWorkers; w++ {
		l.wg.Add(1)
		go l.loop(l.register)
	}
	// A test that ends early stops it too.
	t.Cleanup(l.stop)
	return l
}

func (l *nsLoad) loop(once func()) {
	defer l.wg.Done()
	for {
		select {
		case <-l.quit:
			return
		default:
		}
		once()
		// Pacing only: leaves the two cores to the binders.
		time.Sleep(3 * time.Millisecond)
	}
}

func (l *nsLoad) stop() {
	l.once.Do(func() {
		close(l.quit)
		l.wg.Wait()
	})
}

// window opens or closes n's restart window: open it before signalling n,
// close it once n has caught up.
func (l *nsLoad) window(n *nsNode, open bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.restarting[n.id] = open
}

func (l *nsLoad) inWindow(n *nsNode) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.restarting[n.id]
}

// do sends one request to n and reads the whole answer.
func (l *nsLoad) do(method string, n *nsNode, path string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.url()+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := l.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// nsKind names an answer for the counts: "connection refused", "503
// catching_up", ...
func nsKind(status int, body []byte, err error) string {
	if err != nil {
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return "connection refused"
		case errors.Is(err, syscall.ECONNRESET):
			return "connection reset"
		case errors.Is(err, context.DeadlineExceeded):
			return "timeout"
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return "connection closed"
		}
		return "transport error"
	}
	var e wire.Error
	if json.Unmarshal(body, &e) == nil && e.Code != "" {
		return fmt.Sprintf("%d %s", status, e.Code)
	}
	return fmt.Sprint(status)
}

func (l *nsLoad) lookup() {
	var tried []string
	for _, k := range rand.Perm(len(l.nodes)) {
		n := l.nodes[k]
		before := l.inWindow(n)
		status, body, err := l.do(http.MethodGet, n, "/v1/lookup/echo", nil)
		restarting := before || l.inWindow(n)
		if err == nil && status == http.StatusOK {
			var inst wire.Instance
			if json.Unmarshal(body, &inst) != nil || inst.Type != "echo" || inst.ID == "" {
				l.lookupFailed(fmt.Sprintf("%s: 200 without an instance: %s", n.id, body))
				return
			}
			l.mu.Lock()
			l.lookups++
			l.perNode[n.id]++
			for _, f := range tried {
				l.failovers[f]++
			}
			l.mu.Unlock()
			return
		}
		what := nsKind(status, body, err)
		if !restarting || (err == nil && status != http.StatusServiceUnavailable) {
			detail := strings.TrimSpace(string(body))
			if err != nil {
				detail = err.Error()
			}
			l.lookupFailed(fmt.Sprintf("%s (restarting %v): %s: %s", n.id, restarting, what, detail))
			return
		}
		tried = append(tried, n.id+" "+what)
	}
	l.lookupFailed("no binder answered: " + strings.Join(tried, ", "))
}

func (l *nsLoad) lookupFailed(sample string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lookups++
	l.failed++
	if len(l.samples) < 20 {
		l.samples = append(l.samples, fmt.Sprintf("at %s: %s", time.Since(l.start).Round(time.Millisecond), sample))
	}
}

func (l *nsLoad) register() {
	k := l.seq.Add(1)
	id := fmt.Sprintf("reg-%d", k)
	body, _ := json.Marshal(wire.RegisterRequest{Type: "reg", ID: id, Address: "192.0.2.1", Port: 1024 + int(k%60000)})
	for attempt := 0; attempt < 3*len(l.nodes); attempt++ {
		n := l.nodes[rand.IntN(len(l.nodes))]
		status, data, err := l.do(http.MethodPost, n, "/v1/services", body)
		if err == nil && status == http.StatusOK {
			l.mu.Lock()
			l.acked = append(l.acked, id)
			l.mu.Unlock()
			return
		}
		what := nsKind(status, data, err)
		l.mu.Lock()
		if err != nil || status == http.StatusServiceUnavailable {
			l.regRetries[n.id+" "+what]++
			l.mu.Unlock()
			continue
		}
		// Any other answer is a mistake of the binder or of this test.
		if len(l.regFailures) < 20 {
			l.regFailures = append(l.regFailures, fmt.Sprintf("%s via %s: %s %s", id, n.id, what, data))
		}
		l.mu.Unlock()
		return
	}
	l.mu.Lock()
	l.unacked++
	l.mu.Unlock()
}

// finish stops the load, logs what it did and fails the test on a failed
// lookup, a registration refused, or too few of either to mean anything.
// It returns the acknowledged registrations.
func (l *nsLoad) finish(what string) []string {
	l.t.Helper()
	l.stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Logf("%s: %d lookups in %s, %d failed; answered per node %v; failed over from %v; %d registrations acknowledged, %d not (retried after %v)",
		what, l.lookups, time.Since(l.start).Round(time.Millisecond), l.failed, l.perNode, l.failovers, len(l.acked), l.unacked, l.regRetries)
	if l.failed > 0 {
		l.t.Errorf("%s: %d of %d default lookups failed; first ones:\n%s", what, l.failed, l.lookups, strings.Join(l.samples, "\n"))
	}
	if len(l.regFailures) > 0 {
		l.t.Errorf("%s: registrations refused:\n%s", what, strings.Join(l.regFailures, "\n"))
	}
	require.Greater(l.t, l.lookups, 200, "%s: too few lookups for the test to mean anything", what)
	require.Greater(l.t, len(l.acked), 40, "%s: too few acknowledged registrations to mean anything", what)
	return slices.Clone(l.acked)
}

// rollingRestart restarts every node in turn into bin: open its window,
// SIGTERM, start bin, wait until it has caught up, close the window, wait
// until the whole cluster is ready again. after, when not nil, runs after
// each node.
func (c *nsCluster) rollingRestart(l *nsLoad, bin string, after func(done int)) {
	c.t.Helper()
	for i, n := range c.nodes {
		began := time.Now()
		l.window(n, true)
		c.stop(n)
		n.bin = bin
		c.start(n)
		c.waitCaughtUp(n)
		l.window(n, false)
		leader := c.waitReady()
		c.t.Logf("  %s restarted (%s) and caught up in %s; leader %s", n.id, filepath.Base(bin), time.Since(began).Round(time.Millisecond), leader.id)
		if after != nil {
			after(i + 1)
		}
	}
}

// nsBuildNext builds lieur from the same tree as TestMain did, with another
// version string (-X main.version), into dir: "the next release".
func nsBuildNext(dir string) (string, error) {
	bin := filepath.Join(dir, "lieur-"+nsNextVersion)
	args := []string{"build"}
	if !measuring() {
		args = append(args, "-race")
	}
	args = append(args, "-ldflags=-X main.version="+nsNextVersion, "-o", bin, "../cmd/lieur")
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// nsLdflags is the -ldflags a binary was built with, from its build info.
func nsLdflags(t *testing.T, bin string) string {
	t.Helper()
	info, err := buildinfo.ReadFile(bin)
	require.NoError(t, err)
	for _, s := range info.Settings {
		if s.Key == "-ldflags" {
			return s.Value
		}
	}
	return ""
}

func TestNetnsCluster(t *testing.T) {
	lan := newNetnsLAN(t) // skips, saying why, where namespaces cannot be made
	testStart := time.Now()
	phase := func(name string) func() {
		t.Logf("== %s (at %s)", name, time.Since(testStart).Round(time.Millisecond))
		began := time.Now()
		return func() { t.Logf("== %s took %s", name, time.Since(began).Round(time.Millisecond)) }
	}

	// The second build links while the cluster starts.
	type built struct {
		bin string
		err error
	}
	next := make(chan built, 1)
	buildDir := t.TempDir()
	go func() {
		bin, err := nsBuildNext(buildDir)
		next <- built{bin, err}
	}()
	t.Cleanup(func() { <-next }) // the build ends before its directory is removed

	done := phase("5 binders on 5 hosts of 10.77.x.0/24 and a client host")
	c := newNsCluster(t, lan, 5)
	for _, n := range c.nodes {
		n.mode = []string{"--peers", c.peers()}
	}
	for _, n := range c.nodes {
		c.start(n)
	}
	leader := c.waitReady()
	for k := 1; k <= 3; k++ {
		var resp wire.RegisterResponse
		code, err := nsPost(c.http, leader.url()+"/v1/services", wire.RegisterRequest{Type: "echo", Address: "192.0.2.7", Port: 9000 + k}, &resp)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
	}
	c.waitConverged()
	var hosts []string
	for _, n := range c.nodes {
		hosts = append(hosts, n.id+"@"+n.host.Addr())
	}
	t.Logf("binders %s (leader %s), client host %s", strings.Join(hosts, " "), leader.id, c.client.Addr())
	done()

	var acked []string // every registration acknowledged in the test
	seq := &atomic.Int64{}
	defer c.checkLogs()

	done = phase("rolling restart of all five, same binary, under load")
	load := startNsLoad(t, c, seq)
	c.rollingRestart(load, lieurBin, nil)
	acked = append(acked, load.finish("rolling restart")...)
	c.waitConverged()
	c.checkAcked(acked)
	done()
	if t.Failed() {
		return
	}

	done = phase("rolling upgrade of all five into another build, under load")
	b := <-next
	next <- b // for the cleanup
	require.NoError(t, b.err)
	oldFlags, newFlags := nsLdflags(t, lieurBin), nsLdflags(t, b.bin)
	require.NotEqual(t, oldFlags, newFlags, "the second build must differ from the first")
	out, err := exec.Command(b.bin, "--version").Output()
	require.NoError(t, err)
	require.Contains(t, string(out), nsNextVersion, "the second build reports its version")
	t.Logf("first build: %s (ldflags %q); next build: %s (ldflags %q)", lieurBin, oldFlags, b.bin, newFlags)
	load = startNsLoad(t, c, seq)
	c.rollingRestart(load, b.bin, func(upgraded int) {
		var on []string
		for k, n := range c.nodes {
			want := lieurBin
			if k < upgraded {
				want = b.bin
			}
			require.Equal(t, want, n.exe(), "%s runs the wrong binary", n.id)
			build := "first"
			if n.exe() == b.bin {
				build = "next"
			}
			on = append(on, n.id+":"+build)
		}
		t.Logf("  builds now: %s", strings.Join(on, " "))
	})
	acked = append(acked, load.finish("rolling upgrade")...)
	c.waitConverged()
	c.checkAcked(acked)
	done()
	if t.Failed() {
		return
	}

	done = phase("a follower's link cut, then restored")
	acked = append(acked, c.linkCut(seq, false)...)
	c.checkAcked(acked)
	done()
	if t.Failed() {
		return
	}

	done = phase("the leader's link cut, then restored")
	acked = append(acked, c.linkCut(seq, true)...)
	c.checkAcked(acked)
	done()
	if t.Failed() {
		return
	}

	done = phase("a wiped binder replaced, a non-voter added and promoted, a dead voter cleaned up")
	c.membership()
	c.waitConverged()
	c.checkAcked(acked)
	done()

	t.Logf("in all: %d registrations acknowledged, all on every binder; %s", len(acked), time.Since(testStart).Round(time.Millisecond))
}

// nsPost POSTs body as JSON with client cl.
func nsPost(cl *http.Client, url string, body, out any) (int, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := cl.Do(req)
	if err != nil {
		return 0, err
	}
	return decode(resp, out)
}

// checkAcked fails the test unless every running binder holds every
// acknowledged registration.
func (c *nsCluster) checkAcked(acked []string) {
	c.t.Helper()
	for _, n := range c.live() {
		have, err := c.ids(n, "reg")
		require.NoError(c.t, err)
		var lost []string
		for _, id := range acked {
			if !have[id] {
				lost = append(lost, id)
			}
		}
		if len(lost) > 0 {
			sort.Strings(lost)
			c.t.Errorf("%s lost %d of %d acknowledged registrations: %v", n.id, len(lost), len(acked), lost[:min(len(lost), 20)])
		}
	}
}

// checkLogs fails on a panic or a data race in any agent's log.
func (c *nsCluster) checkLogs() {
	for _, p := range c.logs {
		data, _ := os.ReadFile(p)
		for _, bad := range []string{"panic:", "DATA RACE", "fatal error:"} {
			if strings.Contains(string(data), bad) {
				c.t.Errorf("%s: %q", filepath.Base(p), bad)
			}
		}
	}
}

// linkCut cuts the link of the leader (or of a follower): the other four
// keep acknowledging writes, the cut binder refuses default reads once it
// has heard from no leader for --max-staleness (not before), and within
// 2 s of the link's return it answers them again with the others' table.
// It returns the registrations acknowledged meanwhile.
func (c *nsCluster) linkCut(seq *atomic.Int64, cutLeader bool) []string {
	t := c.t
	leader := c.waitReady()
	var cut *nsNode
	var majority []*nsNode
	for _, n := range c.nodes {
		if cut == nil && (n == leader) == cutLeader && n.running() {
			cut = n
		} else if n.running() {
			majority = append(majority, n)
		}
	}
	// The cut binder is reached from its own host, over no link.
	local := nsHTTPClient(cut.host)
	lookupAtCut := func(query string) (int, string) {
		var e wire.Error
		code, err := nsGet(local, cut.url()+"/v1/lookup/echo"+query, &e)
		if err != nil {
			return 0, err.Error()
		}
		return code, e.Code
	}
	code, _ := lookupAtCut("")
	require.Equal(t, http.StatusOK, code, "%s before the cut", cut.id)

	// write registers one instance through the majority, retrying (same
	// id) until one acknowledges it: during an election a write waits for
	// the new leader, or is refused with a 503 after --write-hold.
	write := func() (string, error) {
		id := fmt.Sprintf("reg-%d", seq.Add(1))
		deadline := time.Now().Add(20 * time.Second)
		var last string
		for time.Now().Before(deadline) {
			n := majority[rand.IntN(len(majority))]
			var resp wire.RegisterResponse
			code, err := nsPost(c.http, n.url()+"/v1/services", wire.RegisterRequest{Type: "reg", ID: id, Address: "192.0.2.1", Port: 1024}, &resp)
			if err == nil && code == http.StatusOK {
				return id, nil
			}
			last = fmt.Sprintf("%s: %d %v", n.id, code, err)
		}
		return "", fmt.Errorf("no binder of the majority acknowledged %s within 20s; last: %s", id, last)
	}

	cutAt := time.Now()
	c.cut = cut
	cut.host.CutLink()
	t.Logf("  link of %s (%s) cut; leader %s", cut.id, cut.host.Addr(), leader.id)

	// The majority writes, one registration after the other, while the
	// cut binder is watched.
	var (
		wmu      sync.Mutex
		acked    []string
		firstAck time.Duration
		werr     error
		stopW    = make(chan struct{})
		wdone    = make(chan struct{})
	)
	go func() {
		defer close(wdone)
		for {
			select {
			case <-stopW:
				return
			default:
			}
			id, err := write()
			wmu.Lock()
			if err != nil {
				werr = err
				wmu.Unlock()
				return
			}
			if len(acked) == 0 {
				firstAck = time.Since(cutAt)
			}
			acked = append(acked, id)
			wmu.Unlock()
		}
	}()
	stopWriter := func() {
		select {
		case <-stopW:
		default:
			close(stopW)
		}
		<-wdone
	}
	defer stopWriter()
	writes := func() (int, error) {
		wmu.Lock()
		defer wmu.Unlock()
		return len(acked), werr
	}

	var refusedAt time.Duration
	waitFor(t, nsMaxStaleness+15*time.Second, cut.id+" refusing default reads", func() (bool, string) {
		code, what := lookupAtCut("")
		if code == http.StatusOK {
			return false, fmt.Sprintf("%s still answers after %s", cut.id, time.Since(cutAt).Round(time.Millisecond))
		}
		if code != http.StatusServiceUnavailable || what != wire.CodeStale {
			t.Fatalf("%s answered a default lookup %d %q after %s of the cut; want 200, then 503 %s", cut.id, code, what, time.Since(cutAt), wire.CodeStale)
		}
		refusedAt = time.Since(cutAt)
		return true, ""
	})
	// It last heard from a leader (or, leading, from a quorum) at most a
	// heartbeat before the cut; the poll only makes the refusal look later.
	if refusedAt < nsMaxStaleness-500*time.Millisecond {
		t.Errorf("%s refused default reads %s after its link was cut, before --max-staleness %s", cut.id, refusedAt, nsMaxStaleness)
	}
	code, _ = lookupAtCut("?stale=true")
	require.Equal(t, http.StatusOK, code, "%s: a stale read while cut", cut.id)
	// The majority goes on past the refusal.
	atRefusal, _ := writes()
	waitFor(t, 30*time.Second, "10 more writes acknowledged by the majority", func() (bool, string) {
		n, err := writes()
		if err != nil {
			t.Fatalf("the majority during the cut: %v", err)
		}
		return n >= atRefusal+10, fmt.Sprintf("%d acknowledged, %d at the refusal", n, atRefusal)
	})
	stopWriter()
	require.NoError(t, werr)
	t.Logf("  %s refused default reads %s after the cut (--max-staleness %s); the majority acknowledged its first write %s after the cut, %d in all",
		cut.id, refusedAt.Round(time.Millisecond), nsMaxStaleness, firstAck.Round(time.Millisecond), len(acked))
	last := acked[len(acked)-1]
	for _, n := range majority {
		waitFor(t, 10*time.Second, n.id+" serving the majority's last write", func() (bool, string) {
			have, err := c.ids(n, "reg")
			return err == nil && have[last], fmt.Sprintf("%v", err)
		})
	}

	// Back: cut agrees with the majority again. Nothing is written now,
	// so agreeing is a fixed target: the leader's applied index and table.
	var want wire.Status
	waitFor(t, 10*time.Second, "the majority's state", func() (bool, string) {
		st, err := c.status(c.waitReady())
		want = st
		return err == nil, fmt.Sprint(err)
	})
	restoredAt := time.Now()
	cut.host.RestoreLink()
	c.cut = nil
	var agreed time.Duration
	waitFor(t, 30*time.Second, cut.id+" agreeing again", func() (bool, string) {
		var st wire.Status
		if code, err := nsGet(local, cut.url()+"/v1/status", &st); code != http.StatusOK {
			return false, fmt.Sprintf("status %d %v", code, err)
		}
		if st.AppliedIndex < want.AppliedIndex || st.TableHash != want.TableHash {
			return false, fmt.Sprintf("at %d/%.8s, the majority at %d/%.8s", st.AppliedIndex, st.TableHash, want.AppliedIndex, want.TableHash)
		}
		if code, what := lookupAtCut(""); code != http.StatusOK {
			return false, fmt.Sprintf("same table, but a default lookup is %d %s", code, what)
		}
		agreed = time.Since(restoredAt)
		return true, ""
	})
	t.Logf("  %s agreed again %s after its link came back (bound %s)", cut.id, agreed.Round(time.Millisecond), nsAgreeBound)
	if agreed > nsAgreeBound {
		t.Errorf("%s took %s to agree again after its link came back; the bound is %s", cut.id, agreed, nsAgreeBound)
	}
	c.waitReady()
	c.waitConverged()
	return acked
}

// membership: a binder's disk is wiped and it comes back under its id; a
// sixth binder joins as a non-voter and is promoted; a voter dies and the
// leader removes it.
func (c *nsCluster) membership() {
	t := c.t
	leader := c.waitReady()

	// Wiped: a follower loses its data dir and rejoins, same id and host.
	var wiped *nsNode
	for _, n := range c.nodes {
		if n != leader {
			wiped = n
			break
		}
	}
	began := time.Now()
	wiped.proc.kill()
	require.NoError(t, os.RemoveAll(wiped.dataDir))
	wiped.mode = []string{"--join", leader.url()}
	c.start(wiped)
	c.waitCaughtUp(wiped)
	c.waitReady()
	c.waitConverged()
	ms, err := c.members(leader)
	require.NoError(t, err)
	require.Len(t, ms, 5, "members after the wiped node rejoined: %v", ms)
	require.True(t, ms[wiped.id], "%s is a voter again: %v", wiped.id, ms)
	t.Logf("  %s wiped and back as a voter, caught up, in %s", wiped.id, time.Since(began).Round(time.Millisecond))

	// A non-voter on a sixth host: it joins, catches up and serves reads
	// without voting; promoted, it votes.
	began = time.Now()
	n6 := c.addNode()
	n6.mode = []string{"--join", leader.url(), "--nonvoter"}
	c.start(n6)
	c.waitCaughtUp(n6)
	waitFor(t, 30*time.Second, n6.id+" listed as a non-voter", func() (bool, string) {
		ms, err := c.members(leader)
		if err != nil {
			return false, err.Error()
		}
		voter, ok := ms[n6.id]
		return ok && !voter, fmt.Sprintf("members %v", ms)
	})
	c.waitConverged()
	if code, err := c.get(n6, "/v1/lookup/echo", nil); code != http.StatusOK {
		t.Fatalf("the non-voter's default lookup: %d %v", code, err)
	}
	binders := []string{}
	for _, n := range c.live() {
		binders = append(binders, n.url())
	}
	out := c.client.Run(lieurBin, "operator", "promote", n6.id, "--binders", strings.Join(binders, ","))
	waitFor(t, 30*time.Second, n6.id+" a voter", func() (bool, string) {
		ms, err := c.members(leader)
		if err != nil {
			return false, err.Error()
		}
		return ms[n6.id], fmt.Sprintf("members %v", ms)
	})
	t.Logf("  %s joined as a non-voter, caught up, promoted (%q) in %s", n6.id, strings.TrimSpace(out), time.Since(began).Round(time.Millisecond))

	// Dead: a voter other than the leader is killed for good; the leader
	// removes it after --cleanup-dead-after.
	leader = c.waitReady()
	var dead *nsNode
	for _, n := range c.nodes {
		if n != leader && n != wiped && n != n6 {
			dead = n
			break
		}
	}
	killedAt := time.Now()
	dead.proc.kill()
	var removedAfter time.Duration
	waitFor(t, nsCleanupDeadAfter+30*time.Second, dead.id+" removed by the leader", func() (bool, string) {
		l := c.waitReady()
		ms, err := c.members(l)
		if err != nil {
			return false, err.Error()
		}
		if _, ok := ms[dead.id]; ok {
			return false, fmt.Sprintf("members %v", ms)
		}
		removedAfter = time.Since(killedAt)
		return true, ""
	})
	t.Logf("  %s killed; the leader removed it %s later (--cleanup-dead-after %s)", dead.id, removedAfter.Round(time.Millisecond), nsCleanupDeadAfter)
	if removedAfter < nsCleanupDeadAfter-time.Second {
		t.Errorf("%s was removed %s after it died, before --cleanup-dead-after %s", dead.id, removedAfter, nsCleanupDeadAfter)
	}
	l := c.waitReady()
	ms, err = c.members(l)
	require.NoError(t, err)
	var voters []string
	for id, v := range ms {
		if v {
			voters = append(voters, id)
		}
	}
	sort.Strings(voters)
	require.Len(t, voters, 5, "voters after the cleanup: %v", ms)
	t.Logf("  voters now: %v", voters)
}
