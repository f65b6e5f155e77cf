package integration

import (
	"bufio"
	"fmt"
	"io"
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

	"github.com/lieur/lieur/transport/wire"
)

// devRun is a `lieur dev` process and what it printed.
type devRun struct {
	cmd  *exec.Cmd
	done chan struct{}

	mu      sync.Mutex
	binders []string
	pids    map[string][]int // node id -> pids in start order
	out     strings.Builder
}

var startedRe = regexp.MustCompile(`^lieur dev: started (n\d+) pid=(\d+)$`)

func startDev(t *testing.T, args ...string) *devRun {
	t.Helper()
	d := &devRun{pids: map[string][]int{}, done: make(chan struct{})}
	d.cmd = exec.Command(lieurBin, append([]string{"dev"}, args...)...)
	stdout, err := d.cmd.StdoutPipe()
	require.NoError(t, err)
	d.cmd.Stderr = io.Discard
	require.NoError(t, d.cmd.Start())
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			d.mu.Lock()
			d.out.WriteString(line + "\n")
			if v, ok := strings.CutPrefix(line, "LIEUR_BINDERS="); ok {
				d.binders = strings.Split(v, ",")
			}
			if m := startedRe.FindStringSubmatch(line); m != nil {
				pid, _ := strconv.Atoi(m[2])
				d.pids[m[1]] = append(d.pids[m[1]], pid)
			}
			d.mu.Unlock()
		}
		_ = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-d.done:
		case <-time.After(20 * time.Second):
			_ = d.cmd.Process.Kill()
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, pids := range d.pids {
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return d
}

func (d *devRun) latestPid(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.pids[id]
	if len(p) == 0 {
		return 0
	}
	return p[len(p)-1]
}

// Row 2: a crashed binder is restarted at once. `lieur dev` restarts a
// SIGKILLed agent with the same id, ports and data dir, and it rejoins:
// it serves what was registered, including what it missed while down.
func TestRow2DevRestartsKilledAgent(t *testing.T) {
	d := startDev(t, "--nodes", "3", "--data-dir", t.TempDir())
	waitFor(t, 30*time.Second, "dev to start 3 agents", func() (bool, string) {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.binders) == 3 && len(d.pids) == 3, d.out.String()
	})
	c := &cluster{t: t}
	for i, b := range d.binders {
		c.nodes = append(c.nodes, &node{id: fmt.Sprintf("n%d", i+1), httpAddr: strings.TrimPrefix(b, "http://")})
	}
	all := func() []int { return []int{0, 1, 2} }
	waitReadyAt(t, c, all())
	c.register(0, "echo", 12347)

	for _, victim := range []string{"n2", "n1"} {
		old := d.latestPid(victim)
		require.NoError(t, syscall.Kill(old, syscall.SIGKILL))
		waitFor(t, 20*time.Second, "dev to restart "+victim, func() (bool, string) {
			p := d.latestPid(victim)
			return p != old && p != 0, fmt.Sprintf("pid still %d", p)
		})
		// Registered while the victim may still be catching up.
		c.register(2, "time"+victim, 12348)
		waitReadyAt(t, c, all())
		waitConvergedAt(t, c, all())
	}
	for i := range c.nodes {
		assert.ElementsMatch(t, []string{"echo-127.0.0.1-12347", "timen2-127.0.0.1-12348", "timen1-127.0.0.1-12348"}, c.servicesAt(i))
	}

	// Ctrl-C stops every agent.
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGINT))
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("dev did not stop within 30s of SIGINT")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, pids := range d.pids {
		pid := pids[len(pids)-1]
		assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "agent %s (pid %d) still runs after dev stopped", id, pid)
	}
}

// waitReadyAt and waitConvergedAt are the cluster checks for nodes this
// test does not own as processes.
func waitReadyAt(t *testing.T, c *cluster, idx []int) {
	t.Helper()
	waitFor(t, 30*time.Second, "a leader known to every node", func() (bool, string) {
		for _, i := range idx {
			var cl wire.ClusterResponse
			if code, err := getJSON(c.nodes[i].url()+"/v1/cluster", &cl); code != 200 || cl.Leader == "" {
				return false, fmt.Sprintf("%s: %d %v leader=%q", c.nodes[i].id, code, err, cl.Leader)
			}
			if st, err := c.status(i); err != nil || !st.CaughtUp {
				return false, fmt.Sprintf("%s not caught up (%v)", c.nodes[i].id, err)
			}
		}
		return true, ""
	})
}

func waitConvergedAt(t *testing.T, c *cluster, idx []int) {
	t.Helper()
	waitFor(t, 30*time.Second, "nodes converge", func() (bool, string) {
		var hashes []string
		var applied []uint64
		for _, i := range idx {
			st, err := c.status(i)
			if err != nil {
				return false, err.Error()
			}
			hashes = append(hashes, st.TableHash)
			applied = append(applied, st.AppliedIndex)
		}
		for k := range hashes {
			if hashes[k] != hashes[0] || applied[k] != applied[0] {
				return false, fmt.Sprintf("applied %v", applied)
			}
		}
		return true, ""
	})
}
