package integration

// Measurements behind docs/reliability.md. They run only with
// LIEUR_MEASURE=1 (`make measure`), on binaries built without the race
// detector, and print figures; they assert behaviour, never timing.

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/client"
	"github.com/lieur/lieur/transport/wire"
)

func measuring() bool { return os.Getenv("LIEUR_MEASURE") == "1" }

func skipUnlessMeasuring(t *testing.T) {
	if !measuring() {
		t.Skip("a measurement, not a test: run `make measure` (LIEUR_MEASURE=1)")
	}
}

// Over 10 leader SIGKILLs: the longest gap between successful
// registrations of a client writing in a loop (each attempt with a 200 ms
// timeout), and the failed lookups of a client looking up in a loop.
func TestMeasureFailover(t *testing.T) {
	skipUnlessMeasuring(t)
	kills := 10
	// MEASURE_AGENT_FLAGS tries other agent settings, e.g. raft timeouts.
	c := startCluster(t, 3, strings.Fields(os.Getenv("MEASURE_AGENT_FLAGS"))...)
	c.register(0, "stable", 16000)
	c.waitConverged()
	writer, err := client.New(client.Config{Binders: c.binders(), RequestTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	defer writer.Close()
	reader := newClient(t, c, nil)
	// Beside the Go client: raw default lookups, each sent to one random
	// serving binder and never retried (the figure of issue 9).
	raw := startLookupLoad(t, c, "stable")

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var mu sync.Mutex
	var successes []time.Time
	var lookups, lookupFails atomic.Int64
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			actx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			_, err := writer.Register(actx, client.Registration{ID: fmt.Sprintf("w-%d", i), Type: "load", Address: "127.0.0.1", Port: 20000 + i%1000})
			cancel()
			if err == nil {
				mu.Lock()
				successes = append(successes, time.Now())
				mu.Unlock()
			}
		}
	}()
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := reader.Lookup(lctx, "stable")
			cancel()
			lookups.Add(1)
			if err != nil && ctx.Err() == nil {
				lookupFails.Add(1)
				t.Logf("lookup failed: %v", err)
			}
		}
	}()
	countSince := func(t0 time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, s := range successes {
			if s.After(t0) {
				n++
			}
		}
		return n
	}
	var windows []time.Duration
	for k := 0; k < kills; k++ {
		warm := time.Now()
		waitFor(t, 30*time.Second, "steady writes", func() (bool, string) { return countSince(warm) >= 50, "" })
		leader := c.leader()
		raw.markDown(leader)
		killedAt := time.Now()
		c.kill(leader)
		survivor := (leader + 1) % 3
		var elected time.Duration
		for elected == 0 && time.Since(killedAt) < 30*time.Second {
			if st, err := c.status(survivor); err == nil && st.Leader != "" && st.Leader != c.nodes[leader].id {
				elected = time.Since(killedAt)
			}
			time.Sleep(5 * time.Millisecond)
		}
		waitFor(t, 30*time.Second, "writes to resume", func() (bool, string) { return countSince(killedAt) >= 20, "" })
		mu.Lock()
		var gap time.Duration
		for i := 1; i < len(successes); i++ {
			if successes[i].After(killedAt) && successes[i-1].Before(killedAt.Add(5*time.Second)) {
				if d := successes[i].Sub(successes[i-1]); d > gap && !successes[i-1].Before(warm) {
					gap = d
				}
			}
		}
		mu.Unlock()
		windows = append(windows, gap)
		t.Logf("kill %d of %s: new leader known after %s, write unavailability %s", k+1, c.nodes[leader].id, elected.Round(time.Millisecond), gap.Round(time.Millisecond))
		c.restart(leader)
		c.waitReady()
		waitCaughtUp(t, c, leader)
		raw.markUp(leader)
	}
	stop()
	wg.Wait()
	raw.stop()
	sorted := append([]time.Duration(nil), windows...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	median := (sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2
	var parts []string
	for _, w := range windows {
		parts = append(parts, w.Round(time.Millisecond).String())
	}
	fmt.Printf("FAILOVER kills=%d median=%s min=%s max=%s windows=[%s] lookups=%d failed_lookups=%d raw_lookups=%d raw_failed=%d %v\n",
		kills, median.Round(time.Millisecond), sorted[0].Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond),
		strings.Join(parts, " "), lookups.Load(), lookupFails.Load(), raw.total, raw.failures, raw.byKind)
	assert.Zero(t, lookupFails.Load(), "lookups failed while two binders were up")
	raw.assertNoFailures()
}

// A node down during 100 000 registrations, the leader's log compacted by
// then, catches up through InstallSnapshot: time from its restart to equal
// applied_index.
func TestMeasureSnapshotCatchUp(t *testing.T) {
	skipUnlessMeasuring(t)
	const total = 100000
	// The leader batches concurrent writes: 100 000 registrations from 64
	// clients make some 7 000 log entries, under the default snapshot
	// threshold (8192) and trailing logs (10 240), so the log would never
	// be compacted past the victim. Lower both so it is.
	c := startCluster(t, 3, "--snapshot-interval=2s", "--snapshot-threshold=1024", "--trailing-logs=1024")
	victim := (c.leader() + 1) % 3
	register := func(from, to int) {
		cl := newClient(t, c, nil)
		forEachConcurrently(from, to, 64, func(i int) {
			for {
				_, err := cl.Register(context.Background(), client.Registration{ID: fmt.Sprintf("bulk-%06d", i), Type: fmt.Sprintf("t%d", i%50), Address: "127.0.0.1", Port: 1 + i%60000})
				if err == nil {
					return
				}
			}
		})
	}
	start := time.Now()
	register(0, total/2)
	c.kill(victim)
	register(total/2, total)
	t.Logf("%d registrations in %s", total, time.Since(start).Round(time.Millisecond))
	// Wait for the leader to snapshot and compact past what the victim has.
	leader := c.leader()
	waitFor(t, 2*time.Minute, "a leader snapshot covering the registrations", func() (bool, string) {
		return strings.Count(c.logSinceStart(leader), "snapshot complete up to") >= 1 && strings.Contains(c.logOf(leader), "compacting logs"), "no snapshot yet"
	})
	var target wire.Status
	_, err := getJSON(c.nodes[leader].url()+"/v1/status", &target)
	require.NoError(t, err)
	restarted := time.Now()
	c.restart(victim)
	waitFor(t, time.Minute, "the restarted node to reach the leader's applied index", func() (bool, string) {
		st, err := c.status(victim)
		if err != nil {
			return false, err.Error()
		}
		return st.AppliedIndex >= target.AppliedIndex && st.Services == total, fmt.Sprintf("applied %d of %d", st.AppliedIndex, target.AppliedIndex)
	})
	took := time.Since(restarted)
	installed := strings.Contains(c.logSinceStart(victim), "Installed remote snapshot") || strings.Contains(c.logSinceStart(victim), "installed remote snapshot")
	fmt.Printf("CATCHUP instances=%d restart_to_equal_applied=%s install_snapshot=%t\n", total, took.Round(time.Millisecond), installed)
	assert.True(t, installed, "the restarted node caught up through InstallSnapshot")
	for _, line := range strings.Split(c.logSinceStart(victim), "\n") {
		if !strings.Contains(line, "new service") {
			t.Logf("victim: %s", line)
		}
	}
	c.waitConverged()
}

// cpuTicks reads a process's user+system CPU time in clock ticks.
func cpuTicks(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) start at ')'.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	var utime, stime uint64
	fmt.Sscan(fields[11], &utime)
	fmt.Sscan(fields[12], &stime)
	return utime + stime, nil
}

const clockTicks = 100 // USER_HZ on Linux

// Leases heartbeating steadily: the cluster's CPU and the Raft log growth
// per minute, for 1 000 and 10 000 instances with a 5 s TTL renewed every
// TTL/3 by clients spread over the binders.
func TestMeasureLeases(t *testing.T) {
	skipUnlessMeasuring(t)
	window := time.Minute
	if v := os.Getenv("MEASURE_LEASE_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err)
		window = d
	}
	for _, count := range []int{1000, 10000} {
		t.Run(fmt.Sprint(count), func(t *testing.T) {
			const ttl = 5 * time.Second
			c := startCluster(t, 3)
			cl := newClient(t, c, nil)
			ids := make([]string, count)
			var wg sync.WaitGroup
			var next atomic.Int64
			for g := 0; g < 64; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1) - 1)
						if i >= count {
							return
						}
						ids[i] = fmt.Sprintf("lease-%05d", i)
						body := wire.RegisterRequest{ID: ids[i], Type: fmt.Sprintf("t%d", i%20), Address: "127.0.0.1", Port: 1 + i%60000, TTL: ttl.String()}
						for {
							if code, err := postJSON(c.nodes[i%3].url()+"/v1/services", body, nil); err == nil && code == 200 {
								break
							}
						}
					}
				}()
			}
			wg.Wait()

			// Heartbeats: each instance every TTL/3, spread evenly.
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			var beats, beatFails atomic.Int64
			work := make(chan string, 1024)
			for g := 0; g < 64; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for id := range work {
						hctx, cancel := context.WithTimeout(ctx, ttl/3)
						err := cl.Heartbeat(hctx, id)
						cancel()
						beats.Add(1)
						if err != nil && ctx.Err() == nil {
							beatFails.Add(1)
						}
					}
				}()
			}
			go func() {
				defer close(work)
				period := ttl / 3
				step := period / time.Duration(count)
				tick := time.NewTicker(max(step, time.Millisecond))
				defer tick.Stop()
				perTick := max(1, int(time.Millisecond/max(step, 1)))
				i := 0
				for {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
					for k := 0; k < perTick; k++ {
						select {
						case work <- ids[i%count]:
						case <-ctx.Done():
							return
						}
						i++
					}
				}
			}()

			time.Sleep(10 * time.Second) // a measurement's warm-up, not a synchronisation
			var pids []int
			for _, n := range c.nodes {
				pids = append(pids, n.cmd.Process.Pid)
			}
			cpu0 := map[int]uint64{}
			for _, p := range pids {
				cpu0[p], _ = cpuTicks(p)
			}
			st0, err := c.status(c.leader())
			require.NoError(t, err)
			beats0, fails0 := beats.Load(), beatFails.Load()
			start := time.Now()
			time.Sleep(window) // the measurement window
			elapsed := time.Since(start)
			var ticks uint64
			for _, p := range pids {
				now, _ := cpuTicks(p)
				ticks += now - cpu0[p]
			}
			st1, err := c.status(c.leader())
			require.NoError(t, err)
			stop()
			wg.Wait()
			cpuPct := float64(ticks) / clockTicks / elapsed.Seconds() * 100
			entriesPerMin := float64(st1.LastLogIndex-st0.LastLogIndex) / elapsed.Minutes()
			beatRate := float64(beats.Load()-beats0) / elapsed.Seconds()
			fmt.Printf("LEASES instances=%d ttl=%s window=%s cluster_cpu=%.1f%%_of_one_core heartbeats_per_s=%.0f failed_heartbeats=%d raft_entries_per_min=%.1f services=%d\n",
				count, ttl, elapsed.Round(time.Second), cpuPct, beatRate, beatFails.Load()-fails0, entriesPerMin, st1.Services)
			assert.Equal(t, count, st1.Services, "no heartbeating instance expired")
		})
	}
}
