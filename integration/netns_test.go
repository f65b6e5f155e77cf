//go:build linux

package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netns is a Linux network namespace made for one test: its own loopback
// (brought up), its own files over /etc (resolv.conf, hosts: whatever
// WriteEtc puts in /etc/netns/<name>/, which `ip netns exec` bind-mounts
// over /etc for every process it starts), and processes run inside it. In
// one, a test may bind well-known ports (DNS on 53) and point a program
// that reads /etc/resolv.conf at them, without touching the host.
//
// The test process itself stays in the host's namespace: it starts
// programs inside through `ip netns exec` (Command, Run, Start), and
// reaches servers inside with sockets opened from a thread moved into the
// namespace (DialContext, HTTPClient).
//
// It is deleted at cleanup, /etc/netns/<name> with it, whether the test
// passed or not; processes started with Start are killed first. Names
// carry the test process's pid and a sequence number, so parallel runs and
// several namespaces in one test do not collide.
//
// Namespaces joined into one Ethernet segment ("hosts" on a LAN) are a
// netnsLAN, below: a bridge in one more namespace (the hub), one veth pair
// per host.
type netns struct {
	t    testing.TB
	name string
	etc  string // /etc/netns/<name>: files ip netns exec mounts over /etc
}

var netnsSeq atomic.Int64

// newNetns creates a namespace with its loopback up, or skips the test,
// saying why, when this machine cannot (not root, no iproute2, no
// namespaces in this container).
func newNetns(t testing.TB) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("skipped: creating a network namespace needs root (euid %d)", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skipf("skipped: creating a network namespace needs iproute2's ip: %v", err)
	}
	sweepOnce.Do(func() { sweepStaleNetns(t) })
	n := &netns{t: t, name: fmt.Sprintf("lieur-it-%d-%d", os.Getpid(), netnsSeq.Add(1))}
	n.etc = filepath.Join("/etc/netns", n.name)
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		t.Skipf("skipped: cannot create a network namespace here: ip netns add %s: %v: %s", n.name, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(n.delete)
	n.IP("link", "set", "lo", "up")
	return n
}

// Name is the namespace's name, as `ip netns` knows it.
func (n *netns) Name() string { return n.name }

// IP runs `ip -n <name> args...` (configure the namespace's interfaces,
// addresses, routes) and fails the test if it fails.
func (n *netns) IP(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", n.name}, args...)...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip -n %s %s: %v: %s", n.name, strings.Join(args, " "), err, out)
	}
}

// WriteEtc writes /etc/netns/<name>/<file>: every process started in the
// namespace afterwards sees it as /etc/<file> (resolv.conf for a
// nameserver inside the namespace). Write before starting the processes.
func (n *netns) WriteEtc(file string, data string) {
	n.t.Helper()
	if err := os.MkdirAll(n.etc, 0o755); err != nil {
		n.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.etc, file), []byte(data), 0o644); err != nil {
		n.t.Fatal(err)
	}
}

// Command is the command that runs name inside the namespace. `ip netns
// exec` execs the program, so the command's process is the program.
func (n *netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.name, name}, args...)...)
}

// Run runs name inside the namespace to completion and returns its
// stdout; it fails the test, with stderr, if the program fails.
func (n *netns) Run(name string, args ...string) string {
	n.t.Helper()
	cmd := n.Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		n.t.Fatalf("in %s: %s %s: %v\nstdout: %s\nstderr: %s", n.name, name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// Start starts name inside the namespace in the background, its output in
// logPath; it is killed at cleanup, and its log shown if the test failed.
func (n *netns) Start(logPath, name string, args ...string) *bgProcess {
	n.t.Helper()
	return startProcess(n.t, logPath, n.Command(name, args...))
}

// DialContext opens a connection from inside the namespace: the socket is
// made on a thread moved into it. addr must be an IP and port (no name is
// resolved, which could happen on another thread).
func (n *netns) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread enters the namespace for good: the goroutine never
		// unlocks it, so the runtime ends the thread with the goroutine
		// rather than run other goroutines on it.
		runtime.LockOSThread()
		if err := n.enter(); err != nil {
			ch <- result{err: err}
			return
		}
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.conn, r.err
}

// enter moves the calling thread into the namespace.
func (n *netns) enter() error {
	f, err := os.Open(filepath.Join("/run/netns", n.name))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns %s: %w", n.name, err)
	}
	return nil
}

// HTTPClient is an HTTP client whose connections are opened inside the
// namespace (URLs must name IPs).
func (n *netns) HTTPClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: n.DialContext, DisableKeepAlives: true}}
}

// delete removes the namespace and its /etc files.
func (n *netns) delete() {
	if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
		n.t.Errorf("ip netns del %s: %v: %s", n.name, err, out)
	}
	if err := os.RemoveAll(n.etc); err != nil {
		n.t.Errorf("removing %s: %v", n.etc, err)
	}
}

// bgProcess is a program a test started in the background.
type bgProcess struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

// startProcess starts cmd with its output in logPath, kills it at cleanup
// and, if the test failed, shows the end of its log.
func startProcess(t testing.TB, logPath string, cmd *exec.Cmd) *bgProcess {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", strings.Join(cmd.Args, " "), err)
	}
	p := &bgProcess{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			t.Logf("---- log of %s ----\n%s", strings.Join(cmd.Args, " "), tail(string(data), 60))
		}
	})
	return p
}

// exited reports whether the process has ended.
func (p *bgProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to end.
func (p *bgProcess) kill() {
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return
	}
	<-p.done
}

// stop sends SIGTERM and waits for the process to end; one still running
// after timeout is killed, and stop says so.
func (p *bgProcess) stop(timeout time.Duration) error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("pid %d did not exit within %s of SIGTERM; killed", p.pid(), timeout)
	}
}

// pid is the process's id (with `ip netns exec`, the program's own).
func (p *bgProcess) pid() int { return p.cmd.Process.Pid }

// netnsLAN is a set of namespaces ("hosts") on one Ethernet segment: a
// bridge in a namespace of its own (the hub), and for each host a veth
// pair, eth0 in the host with an address of the LAN's /24, its peer in
// the hub as a port of the bridge. No end is in the test's own namespace,
// so the LAN's addresses are seen by nothing else on the machine: they
// cannot collide with the host's, and deleting the namespaces at cleanup
// deletes the bridge and every veth with them. The /24 still varies from
// run to run (10.77.X.0/24, X from the pid), so two runs' logs and
// captures do not look alike.
//
// The test reaches a host's servers from a thread moved into some host
// (DialContext, HTTPClient): from a client host, as a client on the LAN
// would, or from the host itself when its link is cut.
type netnsLAN struct {
	t      testing.TB
	hub    *netns
	subnet string // the first three octets
	hosts  int
}

// netnsHost is one host of a netnsLAN.
type netnsHost struct {
	*netns
	lan  *netnsLAN
	addr string // its address on the LAN
	port string // its veth end in the hub: a port of the bridge
}

// newNetnsLAN creates the hub and its bridge, or skips the test as
// newNetns does.
func newNetnsLAN(t testing.TB) *netnsLAN {
	t.Helper()
	hub := newNetns(t)
	hub.IP("link", "add", "br0", "type", "bridge")
	hub.IP("link", "set", "br0", "up")
	return &netnsLAN{t: t, hub: hub, subnet: fmt.Sprintf("10.77.%d", 1+os.Getpid()%250)}
}

// AddHost creates a host on the LAN, its eth0 up with the next address
// (.2, .3, ...).
func (l *netnsLAN) AddHost() *netnsHost {
	l.t.Helper()
	if l.hosts >= 250 {
		l.t.Fatal("a netnsLAN holds at most 250 hosts")
	}
	l.hosts++
	h := &netnsHost{netns: newNetns(l.t), lan: l,
		addr: fmt.Sprintf("%s.%d", l.subnet, 1+l.hosts), port: fmt.Sprintf("port%d", l.hosts)}
	h.IP("link", "add", "eth0", "type", "veth", "peer", "name", h.port, "netns", l.hub.name)
	l.hub.IP("link", "set", h.port, "master", "br0")
	l.hub.IP("link", "set", h.port, "up")
	h.IP("addr", "add", h.addr+"/24", "dev", "eth0")
	h.IP("link", "set", "eth0", "up")
	return h
}

// Addr is the host's address on the LAN.
func (h *netnsHost) Addr() string { return h.addr }

// CutLink takes the host's port on the bridge down, as a pulled cable:
// the host keeps its address and its processes, and every frame to or
// from it is dropped, so its peers' connections hang rather than fail.
func (h *netnsHost) CutLink() { h.lan.hub.IP("link", "set", h.port, "down") }

// RestoreLink puts the host's port back up (no spanning tree: it forwards
// at once).
func (h *netnsHost) RestoreLink() { h.lan.hub.IP("link", "set", h.port, "up") }

var sweepOnce sync.Once

// sweepStaleNetns deletes the namespaces (and /etc/netns entries) a test
// process that no longer exists left behind (killed by a timeout, its
// cleanups never ran), after killing what still runs in them: names
// carry the creating process's pid.
func sweepStaleNetns(t testing.TB) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		var pid, seq int
		if n, _ := fmt.Sscanf(e.Name(), "lieur-it-%d-%d", &pid, &seq); n != 2 || e.Name() != fmt.Sprintf("lieur-it-%d-%d", pid, seq) {
			continue
		}
		if pid == os.Getpid() || unix.Kill(pid, 0) != unix.ESRCH {
			continue // its test still runs (or the pid is taken: leave it)
		}
		if out, err := exec.Command("ip", "netns", "pids", e.Name()).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				var p int
				if _, err := fmt.Sscanf(f, "%d", &p); err == nil && p > 1 {
					_ = unix.Kill(p, unix.SIGKILL)
				}
			}
		}
		out, err := exec.Command("ip", "netns", "del", e.Name()).CombinedOutput()
		_ = os.RemoveAll(filepath.Join("/etc/netns", e.Name()))
		t.Logf("removed namespace %s left by a test process (%d) that is gone: %v %s", e.Name(), pid, err, strings.TrimSpace(string(out)))
	}
}
