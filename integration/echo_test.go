package integration

// The lieur-echo demo end to end: servers that register at start-up and
// deregister on SIGTERM, and a caller that resolves through the binders,
// reports a dead server and resolves again.

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var echoServingRe = regexp.MustCompile(`^lieur-echo: serving type=(\S+) addr=127\.0\.0\.1:(\d+) id=(\S+)$`)

// echoServer is one `lieur-echo serve` process.
type echoServer struct {
	typ  string
	port int
	id   string

	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
	err  error         // cmd.Wait's result, set before done is closed

	mu     sync.Mutex
	lines  []string // stdout so far
	stderr echoBuffer
}

// echoBuffer is a bytes.Buffer safe to read while the process writes it.
type echoBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *echoBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *echoBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (s *echoServer) stdout() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

func (s *echoServer) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// startEchoServer starts `lieur-echo serve` on a free port and waits for
// its "serving" line, which names its port and registration id.
func startEchoServer(t *testing.T, binders, typ string, extra ...string) *echoServer {
	t.Helper()
	return startEchoProcess(t, echoServingRe, append([]string{"serve", "--type", typ, "--port", "0", "--binders", binders}, extra...))
}

// startEchoProcess runs lieur-echo with args and waits for the line
// serving matches (type, port and id, in that order), whose type must be
// the one asked for.
func startEchoProcess(t *testing.T, serving *regexp.Regexp, args []string) *echoServer {
	t.Helper()
	typ := ""
	for i := range args[:len(args)-1] {
		if args[i] == "--type" {
			typ = args[i+1]
		}
	}
	s := &echoServer{typ: typ, done: make(chan struct{})}
	s.cmd = exec.Command(echoBin, args...)
	s.cmd.Env = procEnv()
	s.cmd.Stderr = &s.stderr
	out, err := s.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, s.cmd.Start())
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.mu.Lock()
			s.lines = append(s.lines, sc.Text())
			s.mu.Unlock()
		}
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
	})
	waitFor(t, 30*time.Second, "lieur-echo "+args[0]+" to register", func() (bool, string) {
		for _, l := range s.stdout() {
			if m := serving.FindStringSubmatch(l); m != nil {
				require.Equal(t, typ, m[1])
				s.port, _ = strconv.Atoi(m[2])
				s.id = m[3]
				return true, ""
			}
		}
		if s.exited() {
			t.Fatalf("lieur-echo %s exited (%v) before serving: stdout %q, stderr %q", args[0], s.err, s.stdout(), s.stderr.String())
		}
		return false, fmt.Sprintf("stdout %q", s.stdout())
	})
	return s
}

// signal sends sig and waits for the process to exit.
func (s *echoServer) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, s.cmd.Process.Signal(sig))
	waitFor(t, 20*time.Second, fmt.Sprintf("lieur-echo serve to exit on %v", sig), func() (bool, string) {
		return s.exited(), fmt.Sprintf("stdout %q", s.stdout())
	})
}

func echoCall(t *testing.T, binders string, args ...string) procResult {
	t.Helper()
	return runBinary(t, nil, echoBin, append([]string{"call", "--binders", binders}, args...)...)
}

// waitLogged waits until every node has logged line.
func waitLogged(t *testing.T, c *cluster, line string) {
	t.Helper()
	for i := range c.nodes {
		waitFor(t, 10*time.Second, c.nodes[i].id+" logs "+line, func() (bool, string) {
			return strings.Contains(c.logOf(i), line), "not in its log"
		})
	}
}

func TestEcho(t *testing.T) {
	c := startCluster(t, 3)
	all := strings.Join(c.binders(), ",")
	one := c.nodes[1].url()

	a := startEchoServer(t, all, "echo")
	b := startEchoServer(t, all, "echo")
	require.NotEqual(t, a.id, b.id)
	c.waitConverged()
	for i := range c.nodes {
		assert.Subset(t, c.servicesAt(i), []string{a.id, b.id}, "node %s serves both", c.nodes[i].id)
		for _, s := range []*echoServer{a, b} {
			assert.Contains(t, c.logOf(i), fmt.Sprintf("new service: id=%s type=echo addr=127.0.0.1:%d", s.id, s.port))
		}
	}

	t.Run("Call", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"one call", []string{"hello"}, "hello\n"},
			{"type given", []string{"--type", "echo", "hello world"}, "hello world\n"},
			{"several calls", []string{"--count", "3", "hi"}, "hi\nhi\nhi\n"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := echoCall(t, all, tc.args...)
				require.Equal(t, 0, r.code, "%v", r)
				assert.Equal(t, tc.want, r.stdout)
				assert.Empty(t, r.stderr)
			})
		}
		r := echoCall(t, all, "--type", "nope", "hi")
		assert.NotEqual(t, 0, r.code)
		assert.Empty(t, r.stdout)
		assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "one error line: %v", r)
		assert.Contains(t, r.stderr, `unknown service type "nope"`)
	})

	t.Run("SIGTERMDeregisters", func(t *testing.T) {
		b.signal(t, syscall.SIGTERM)
		require.NoError(t, b.err, "lieur-echo serve exits cleanly on SIGTERM; stderr %q", b.stderr.String())
		assert.Equal(t, "lieur-echo: deregistered "+b.id, b.stdout()[len(b.stdout())-1])
		assert.Empty(t, b.stderr.String())
		c.waitConverged()
		for i := range c.nodes {
			served := c.servicesAt(i)
			assert.NotContains(t, served, b.id, "node %s dropped the stopped server", c.nodes[i].id)
			assert.Contains(t, served, a.id, "node %s", c.nodes[i].id)
		}
		waitLogged(t, c, "removed service: id="+b.id+" reason=deregistered")

		r := echoCall(t, all, "--count", "2", "still there")
		require.Equal(t, 0, r.code, "%v", r)
		assert.Equal(t, "still there\nstill there\n", r.stdout)
		assert.Empty(t, r.stderr, "no server was unreachable")
	})

	t.Run("SIGKILLReportedAndRemoved", func(t *testing.T) {
		d := startEchoServer(t, all, "echo")
		c.waitConverged()
		for i := range c.nodes {
			require.ElementsMatch(t, []string{a.id, d.id}, c.servicesAt(i), "node %s serves the two echo servers only", c.nodes[i].id)
		}
		d.signal(t, syscall.SIGKILL)

		// Each call resolves once, at node one, whose round-robin cursor
		// alternates between the two registered servers: of two calls in
		// a row, one picks the dead server. That call reports it (the node
		// removes it before answering) and resolves again, to the live one.
		reportRe := regexp.MustCompile(`^lieur-echo: ` + regexp.QuoteMeta(d.id) + ` unreachable \(.*127\.0\.0\.1:` + strconv.Itoa(d.port) + `.*\); reported, verdict removed$`)
		reported := false
		for call := 1; call <= 2 && !reported; call++ {
			r := echoCall(t, one, "--attempts", "3", "hi")
			require.Equal(t, 0, r.code, "call %d: %v", call, r)
			assert.Equal(t, "hi\n", r.stdout, "call %d", call)
			if r.stderr == "" {
				continue
			}
			reported = true
			for _, l := range strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n") {
				assert.Regexp(t, reportRe, l, "call %d reports the killed server and nothing else", call)
			}
		}
		require.True(t, reported, "one of two calls tried the dead server and reported it")

		c.waitConverged()
		for i := range c.nodes {
			served := c.servicesAt(i)
			assert.NotContains(t, served, d.id, "node %s dropped the killed server", c.nodes[i].id)
			assert.Contains(t, served, a.id, "node %s kept the live one", c.nodes[i].id)
		}
		waitLogged(t, c, "removed service: id="+d.id+" reason=reported-down")

		// With the dead server gone no call needs a report.
		r := echoCall(t, all, "hi again")
		require.Equal(t, 0, r.code, "%v", r)
		assert.Equal(t, "hi again\n", r.stdout)
		assert.Empty(t, r.stderr)
	})

	t.Run("CallWaitsForAServer", func(t *testing.T) {
		var stdout, stderr echoBuffer
		cmd := exec.Command(echoBin, "call", "--type", "late", "--wait", "20s", "--binders", all, "anyone there")
		cmd.Env = procEnv()
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Start())
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() { _ = cmd.Process.Kill() })

		late := startEchoServer(t, all, "late")
		var err error
		waitFor(t, 40*time.Second, "the waiting call to return", func() (bool, string) {
			select {
			case err = <-exited:
				return true, ""
			default:
				return false, fmt.Sprintf("stdout %q, stderr %q", stdout.String(), stderr.String())
			}
		})
		require.NoError(t, err, "call --wait: stdout %q, stderr %q", stdout.String(), stderr.String())
		assert.Equal(t, "anyone there\n", stdout.String())
		assert.Empty(t, stderr.String())
		assert.False(t, late.exited(), "the server still runs")
	})
}
