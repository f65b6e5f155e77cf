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
	"sync/atomic"
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
// Joining namespaces (a later issue: five binders on five "hosts" joined
// by a bridge) extends this type rather than replacing it: a bridge lives
// in one more namespace (a hub), each host gets a veth pair with one end
// moved into the hub and enslaved to the bridge, and addresses are set
// with IP("addr", "add", ...). Everything `ip -n` needs is the name.
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
