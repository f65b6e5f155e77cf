package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/wire"
)

// Paths of the binaries built once by TestMain.
var (
	lieurBin string
	echoBin  string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lieur-it-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lieurBin = filepath.Join(dir, "lieur")
	echoBin = filepath.Join(dir, "lieur-echo")
	// The binaries are built with the race detector so that races in the
	// real processes fail the tests too; measurements use plain builds.
	flags := []string{"build", "-race"}
	if measuring() {
		flags = []string{"build"}
	}
	for bin, pkg := range map[string]string{lieurBin: "../cmd/lieur", echoBin: "../cmd/lieur-echo"} {
		cmd := exec.Command("go", append(flags, "-o", bin, pkg)...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", pkg, "failed:", err)
			os.Exit(1)
		}
	}
	if !measuring() {
		fmt.Println("integration: TestMeasure* are skipped: they are measurements, run by `make measure`")
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// node is one agent process of a test cluster. Its id, ports and data dir
// stay the same across restarts.
type node struct {
	id       string
	raftAddr string
	httpAddr string
	dataDir  string
	logPath  string
	args     []string // how it was last started
	logStart int64    // size of the log file when it was last started

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func (n *node) url() string { return "http://" + n.httpAddr }

// cluster is a set of agent processes started by a test.
type cluster struct {
	t     *testing.T
	dir   string
	nodes []*node
	extra []string // flags given to every agent
}

// fastFlags keep tests short: snapshots are taken often so that restarted
// nodes exercise InstallSnapshot, and probes give up quickly.
var fastFlags = []string{"--probe-timeout=500ms", "--log-level=info"}

// newCluster allocates ids, ports and data dirs for n nodes without
// starting them.
func newCluster(t *testing.T, n int, extra ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), extra: append(append([]string{}, fastFlags...), extra...)}
	ports := freePorts(t, 2*n)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("n%d", i+1)
		c.nodes = append(c.nodes, &node{
			id:       id,
			raftAddr: fmt.Sprintf("127.0.0.1:%d", ports[2*i]),
			httpAddr: fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]),
			dataDir:  filepath.Join(c.dir, id),
			logPath:  filepath.Join(c.dir, id+".log"),
		})
	}
	t.Cleanup(c.killAll)
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.nodes {
				data, _ := os.ReadFile(n.logPath)
				t.Logf("---- log of %s ----\n%s", n.id, tail(string(data), 80))
			}
		}
	})
	return c
}

// startCluster starts n nodes that bootstrap together and waits until
// they have a leader that every node can forward to.
func startCluster(t *testing.T, n int, extra ...string) *cluster {
	t.Helper()
	c := newCluster(t, n, extra...)
	for i := range c.nodes {
		c.startPeers(i, c.peers())
	}
	c.waitReady()
	return c
}

func (c *cluster) peers() string {
	var p []string
	for _, n := range c.nodes {
		p = append(p, n.id+"="+n.raftAddr)
	}
	return strings.Join(p, ",")
}

func (c *cluster) binders() []string {
	var b []string
	for _, n := range c.nodes {
		b = append(b, n.url())
	}
	return b
}

// startPeers starts node i bootstrapping (or resuming) with the given peers.
func (c *cluster) startPeers(i int, peers string) {
	c.start(i, "--peers", peers)
}

// startJoin starts node i asking the node at url to add it.
func (c *cluster) startJoin(i int, url string) {
	c.start(i, "--join", url)
}

func (c *cluster) start(i int, mode ...string) {
	c.t.Helper()
	n := c.nodes[i]
	args := append([]string{"agent", "--id", n.id, "--raft-addr", n.raftAddr, "--http-addr", n.httpAddr, "--data-dir", n.dataDir}, mode...)
	args = append(args, c.extra...)
	n.args = args
	c.exec(n)
}

func (c *cluster) exec(n *node) {
	c.t.Helper()
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	require.NoError(c.t, err)
	if fi, err := logf.Stat(); err == nil {
		n.logStart = fi.Size()
	}
	cmd := exec.Command(lieurBin, n.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(c.t, cmd.Start())
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
	waitFor(c.t, 30*time.Second, n.id+" serves HTTP", func() (bool, string) {
		if !n.running() {
			return false, "process exited"
		}
		code, _ := getJSON(n.url()+"/healthz", nil)
		return code == http.StatusOK, fmt.Sprintf("healthz %d", code)
	})
}

func (n *node) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL to node i and waits for it to exit.
func (c *cluster) kill(i int) { c.signal(i, syscall.SIGKILL) }

// stop sends SIGTERM to node i and waits for it to exit.
func (c *cluster) stop(i int) { c.signal(i, syscall.SIGTERM) }

func (c *cluster) signal(i int, sig syscall.Signal) {
	n := c.nodes[i]
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		c.t.Errorf("%s did not exit within 20s of %v", n.id, sig)
	}
}

// pause stops node i with SIGSTOP (a stalled process); resume continues it.
func (c *cluster) pause(i int)  { c.sendOnly(i, syscall.SIGSTOP) }
func (c *cluster) resume(i int) { c.sendOnly(i, syscall.SIGCONT) }

func (c *cluster) sendOnly(i int, sig syscall.Signal) {
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		_ = n.cmd.Process.Signal(sig)
	}
}

// restart starts node i again with the arguments it last had.
func (c *cluster) restart(i int) { c.exec(c.nodes[i]) }

func (c *cluster) killAll() {
	for _, n := range c.nodes {
		n.mu.Lock()
		cmd, done := n.cmd, n.done
		n.mu.Unlock()
		if cmd != nil {
			_ = cmd.Process.Kill()
			<-done
		}
	}
}

// running returns the indexes of the nodes whose process is up.
func (c *cluster) running() []int {
	var out []int
	for i, n := range c.nodes {
		if n.running() {
			out = append(out, i)
		}
	}
	return out
}

// waitReady waits until every running node agrees on one leader and knows
// the HTTP address of every member, so writes can be forwarded anywhere.
func (c *cluster) waitReady() {
	c.t.Helper()
	waitFor(c.t, 30*time.Second, "cluster ready", func() (bool, string) {
		leader := ""
		for _, i := range c.running() {
			var cl wire.ClusterResponse
			if code, err := getJSON(c.nodes[i].url()+"/v1/cluster", &cl); code != 200 {
				return false, fmt.Sprintf("%s: cluster %d %v", c.nodes[i].id, code, err)
			}
			if cl.Leader == "" || (leader != "" && cl.Leader != leader) {
				return false, fmt.Sprintf("%s sees leader %q", c.nodes[i].id, cl.Leader)
			}
			if st, err := c.status(i); err != nil || !st.CaughtUp {
				return false, fmt.Sprintf("%s not caught up (%v)", c.nodes[i].id, err)
			}
			leader = cl.Leader
			for _, m := range cl.Members {
				if m.HTTPAddr == "" {
					return false, fmt.Sprintf("%s does not know %s's http address", c.nodes[i].id, m.ID)
				}
			}
		}
		return true, ""
	})
}

// leader returns the index of the node every running node names leader.
func (c *cluster) leader() int {
	c.t.Helper()
	c.waitReady()
	var st wire.Status
	_, err := getJSON(c.nodes[c.running()[0]].url()+"/v1/status", &st)
	require.NoError(c.t, err)
	for i, n := range c.nodes {
		if n.id == st.Leader {
			return i
		}
	}
	c.t.Fatalf("leader %q is not a node of the cluster", st.Leader)
	return -1
}

func (c *cluster) status(i int) (wire.Status, error) {
	var st wire.Status
	code, err := getJSON(c.nodes[i].url()+"/v1/status", &st)
	if err == nil && code != 200 {
		err = fmt.Errorf("status %d", code)
	}
	return st, err
}

// waitConverged waits until every running node has applied the same index
// and holds the same table, and returns that table's hash.
func (c *cluster) waitConverged() string {
	c.t.Helper()
	return c.waitConvergedWithin(30 * time.Second)
}

func (c *cluster) waitConvergedWithin(d time.Duration) string {
	c.t.Helper()
	var hash string
	waitFor(c.t, d, "nodes converge", func() (bool, string) {
		var first *wire.Status
		for _, i := range c.running() {
			st, err := c.status(i)
			if err != nil {
				return false, err.Error()
			}
			if first == nil {
				first = &st
				continue
			}
			if st.AppliedIndex != first.AppliedIndex || st.TableHash != first.TableHash {
				return false, fmt.Sprintf("%s at %d/%s, %s at %d/%s", first.ID, first.AppliedIndex, first.TableHash[:8], st.ID, st.AppliedIndex, st.TableHash[:8])
			}
		}
		hash = first.TableHash
		return true, ""
	})
	return hash
}

// logOf returns what node i has logged so far, across restarts.
func (c *cluster) logOf(i int) string {
	data, _ := os.ReadFile(c.nodes[i].logPath)
	return string(data)
}

// logSinceStart returns what node i has logged since it was last started.
func (c *cluster) logSinceStart(i int) string {
	log := c.logOf(i)
	if int(c.nodes[i].logStart) <= len(log) {
		return log[c.nodes[i].logStart:]
	}
	return log
}

// register registers a service at node i and returns its id.
func (c *cluster) register(i int, typ string, port int) string {
	c.t.Helper()
	var resp wire.RegisterResponse
	code, err := postJSON(c.nodes[i].url()+"/v1/services", wire.RegisterRequest{Type: typ, Address: "127.0.0.1", Port: port}, &resp)
	require.NoError(c.t, err)
	require.Equal(c.t, http.StatusOK, code)
	return resp.ID
}

// servicesAt returns the ids node i serves.
func (c *cluster) servicesAt(i int) []string {
	c.t.Helper()
	var resp wire.ServicesResponse
	code, err := getJSON(c.nodes[i].url()+"/v1/services", &resp)
	require.NoError(c.t, err)
	require.Equal(c.t, 200, code)
	var ids []string
	for _, s := range resp.Services {
		ids = append(ids, s.ID)
	}
	return ids
}

// waitFor polls cond until it holds or the timeout passes; the string cond
// returns says what it saw, for the failure message.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, seen := cond()
		if ok {
			return
		}
		last = seen
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last seen: %s", timeout, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var httpc = &http.Client{Timeout: 30 * time.Second}

// getJSON GETs url and decodes a 2xx body into out (when not nil). It
// returns the status, or 0 and the error when the request failed.
func getJSON(url string, out any) (int, error) {
	resp, err := httpc.Get(url)
	if err != nil {
		return 0, err
	}
	return decode(resp, out)
}

func postJSON(url string, body, out any) (int, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	resp, err := httpc.Post(url, "application/json", bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	return decode(resp, out)
}

func doJSON(method, url string, out any) (int, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, err
	}
	return decode(resp, out)
}

func decode(resp *http.Response, out any) (int, error) {
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		var e wire.Error
		if err := json.Unmarshal(data, &e); err != nil || e.Error == "" {
			return resp.StatusCode, fmt.Errorf("status %d with a body that is not a JSON error: %q", resp.StatusCode, data)
		}
		if eo, ok := out.(*wire.Error); ok {
			*eo = e
		}
		return resp.StatusCode, nil
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %q: %w", data, err)
		}
	}
	return resp.StatusCode, nil
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var lns []net.Listener
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range lns {
		l.Close()
	}
	return ports
}

// liveServer is a TCP server that accepts and closes connections: enough
// for a binder's probe to find it alive.
func liveServer(t testing.TB) (port int, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { ln.Close() }) }
	t.Cleanup(stop)
	return ln.Addr().(*net.TCPAddr).Port, stop
}

// deadPort is a loopback port with nothing listening.
func deadPort(t testing.TB) int { return freePorts(t, 1)[0] }

// hangingServer returns a port whose TCP handshakes never complete: its
// listen queue (backlog 0) is filled by one connection that is never
// accepted, so the kernel drops further SYNs and a probe waits for its
// timeout.
func hangingServer(t testing.TB) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	t.Cleanup(func() { syscall.Close(fd) })
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, syscall.Listen(fd, 0))
	sa, err := syscall.Getsockname(fd)
	require.NoError(t, err)
	port := sa.(*syscall.SockaddrInet4).Port
	filler, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { filler.Close() })
	// The queue is full once a second handshake no longer completes.
	_, err = net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 300*time.Millisecond)
	require.Error(t, err, "the hanging server accepted a second connection")
	return port
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// forEachConcurrently calls do for every i in [from, to) from workers
// goroutines, each taking the next i, and returns once all are done: the
// shape of every bulk load in these tests.
func forEachConcurrently(from, to, workers int, do func(i int)) {
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= to {
					return
				}
				do(i)
			}
		}()
	}
	wg.Wait()
}
