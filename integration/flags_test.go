package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// agentRun is what one `lieur agent` process left behind.
type agentRun struct {
	code           int
	stdout, stderr string
}

// runAgent runs `lieur agent args...` to completion. A process still
// running after the deadline is killed and fails the test: a refused
// configuration must end the agent, not leave it hanging.
func runAgent(t *testing.T, deadline time.Duration, args ...string) agentRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, lieurBin, append([]string{"agent"}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("lieur agent %s still running after %s; stderr:\n%s", strings.Join(args, " "), deadline, tail(stderr.String(), 40))
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run lieur agent: %v", err)
	}
	return agentRun{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

// assertNoCrash checks that neither stream holds a Go panic or a
// goroutine dump.
func assertNoCrash(t *testing.T, r agentRun) {
	t.Helper()
	for name, s := range map[string]string{"stdout": r.stdout, "stderr": r.stderr} {
		assert.NotContains(t, s, "panic", "%s holds a panic", name)
		assert.NotContains(t, s, "goroutine ", "%s holds a stack trace", name)
	}
}

// hclogLine matches a line the agent's logger writes to stderr.
var hclogLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\S+ \[(TRACE|DEBUG|INFO|WARN|ERROR)\] `)

// TestAgentRefusesBadPeers: --peers that Raft could not bootstrap end the
// agent at flag validation: exit 1 and exactly one line on stderr, before
// anything starts. Each case runs twice: with free ports, as an operator
// would meet it, and with the agent's HTTP port held by the test, where an
// agent that bound its ports before checking --peers would report the
// taken port instead. Its data dir, created only once the node starts,
// must not exist afterwards.
func TestAgentRefusesBadPeers(t *testing.T) {
	tests := []struct {
		name  string
		peers func(self, other1, other2 string) string
		want  func(self, other1, other2 string) string
	}{
		{"duplicate id",
			func(self, a, b string) string { return fmt.Sprintf("n1=%s,n2=%s,n1=%s", self, a, b) },
			func(_, _, _ string) string { return `lieur: --peers: id "n1" listed twice` }},
		// Raft's bootstrap refuses this; before it was checked up front
		// the agent then panicked closing the half-started node.
		{"duplicate raft address",
			func(self, a, _ string) string { return fmt.Sprintf("n1=%s,n2=%s,n3=%s", self, a, a) },
			func(_, a, _ string) string {
				return fmt.Sprintf(`lieur: --peers: "n2" and "n3" share raft address %s`, a)
			}},
		{"self missing",
			func(_, a, b string) string { return fmt.Sprintf("n2=%s,n3=%s", a, b) },
			func(_, _, _ string) string { return "lieur: --peers: this node (--id n1) is not among them" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ports := freePorts(t, 4)
			addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
			self, other1, other2 := addr(0), addr(1), addr(2)
			held, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer held.Close()

			for _, httpAddr := range []string{addr(3), held.Addr().String()} {
				dataDir := filepath.Join(t.TempDir(), "n1")
				r := runAgent(t, time.Minute, "--id", "n1", "--raft-addr", self, "--http-addr", httpAddr,
					"--data-dir", dataDir, "--peers", tc.peers(self, other1, other2))

				assertNoCrash(t, r)
				assert.Equal(t, 1, r.code, "exit code (http addr %s)", httpAddr)
				assert.Empty(t, r.stdout)
				assert.Equal(t, tc.want(self, other1, other2)+"\n", r.stderr,
					"stderr must be exactly the one error line (http addr %s)", httpAddr)
				_, err := os.Stat(dataDir)
				assert.True(t, os.IsNotExist(err), "the data dir was created: %v", err)
			}
		})
	}
}

// TestAgentRefusesUnreachableJoin: --join at a port where nothing listens
// ends the agent after --join-timeout with exit 1. The agent has started
// by then, so stderr holds its log lines first; the last line is the
// error, and every line before it is a log line (no panic, no stack).
func TestAgentRefusesUnreachableJoin(t *testing.T) {
	ports := freePorts(t, 2)
	join := fmt.Sprintf("http://127.0.0.1:%d", deadPort(t))

	r := runAgent(t, time.Minute, "--id", "n1", "--raft-addr", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", ports[1]), "--data-dir", filepath.Join(t.TempDir(), "n1"),
		"--join", join, "--join-timeout=2s")

	assertNoCrash(t, r)
	assert.Equal(t, 1, r.code, "exit code")
	assert.Empty(t, r.stdout)
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	assert.True(t, strings.HasPrefix(last, "lieur: join "+join+": no successful answer within 2s: "), "last line: %q", last)
	assert.Contains(t, last, "connection refused")
	for _, l := range lines[:len(lines)-1] {
		assert.Regexp(t, hclogLine, l, "a line before the error is not a log line")
	}
	assert.Contains(t, r.stderr, "join failed, retrying", "the agent did not try to join")
}
