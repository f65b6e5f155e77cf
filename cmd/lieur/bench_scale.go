package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lieur/lieur/transport/wire"
)

// scaleConfig is what `lieur bench scale` takes.
type scaleConfig struct {
	sizes          []int
	clients        int           // concurrent registering clients
	perType        int           // instances per service type
	lookupClients  int           // concurrent lookup clients
	lookupDuration time.Duration // length of one lookup run
	lookupRuns     int
	repeat         int // restarts and wipes at each size
	// rejoinAsIs starts a wiped node with --join while the cluster still
	// lists it, as an operator might; by default its membership is
	// removed first. As is, hashicorp/raft v1.8.0 sometimes never catches
	// it up: the leader replaces the membership (remove, add) while the
	// new process already listens, the old replication stream pushes the
	// removal entry after a snapshot, and the node ends with a log entry
	// past its snapshot but not the one at the snapshot's index; every
	// append is then refused and every new snapshot keeps that entry.
	rejoinAsIs bool
	runs       int // whole runs, each on a fresh cluster
	agentFlags []string
	keep       bool
	json       bool
	// profile, when set, is a directory for CPU profiles: the leader's
	// during each size's registrations, the wiped node's during its
	// catch-up (profileFor long each).
	profile    string
	profileFor time.Duration
}

// scaleRow is one size's figures in one run.
type scaleRow struct {
	Instances       int     `json:"instances"`
	RegisterOpsPerS float64 `json:"register_ops_per_s"`
	RegisterSeconds float64 `json:"register_seconds"`
	// HeapPerInstance is the leader's live heap (after a forced GC) less
	// its heap before any registration, divided by the instances;
	// HeapCaughtUp the same for the node that caught up after a wipe.
	HeapPerInstance float64 `json:"heap_bytes_per_instance"`
	HeapCaughtUp    float64 `json:"heap_bytes_per_instance_caught_up"`
	// SnapshotBytes and SnapshotWriteMs: the size of the snapshot covering
	// the table and the time its FSM encoding and file took (median of the
	// three nodes): meta.json written less the creation time in its id.
	SnapshotBytes   int64   `json:"snapshot_bytes"`
	SnapshotWriteMs float64 `json:"snapshot_write_ms"`
	// RestoreMs: a restarted follower's FSM restore of that snapshot
	// (raft's "starting restore" to "restored" log lines); RestartMs: its
	// process start until it had applied the leader's last write.
	RestoreMs float64 `json:"restore_ms"`
	RestartMs float64 `json:"restart_to_caught_up_ms"`
	// CatchUpMs: a follower killed, removed from the cluster, its data dir
	// deleted, started with --join: process start until it had applied
	// the leader's last write (its table hash is then checked equal).
	// InstalledMs: when raft had installed the leader's snapshot, from the
	// same start.
	CatchUpMs        float64 `json:"catch_up_ms"`
	InstalledMs      float64 `json:"snapshot_installed_ms"`
	InstallSnapshot  bool    `json:"install_snapshot"`
	LookupOpsPerS    float64 `json:"lookup_ops_per_s"`
	LookupP50Ms      float64 `json:"lookup_p50_ms"`
	LookupP99Ms      float64 `json:"lookup_p99_ms"`
	LookupErrors     int64   `json:"lookup_errors"`
	RegisterFailures int64   `json:"register_failures"`
	// Elections: how far the raft term moved during the registrations.
	Elections int `json:"elections"`
}

func newBenchScaleCmd() *cobra.Command {
	cfg := scaleConfig{}
	var sizes string
	cmd := &cobra.Command{
		Use:   "scale",
		Short: "Start 3 agents and measure heap, snapshots, catch-up and lookups at growing table sizes",
		Long: `Start a 3-node cluster of agents (this binary, real processes, on loopback)
and grow its table through the sizes given, registering with concurrent
keep-alive clients spread over the nodes (the binders batch concurrent
writes into one log entry; the API has no batch registration). At each size:

  heap      each node's live heap after a forced GC (/debug/pprof/heap?gc=1),
            less its heap before the first registration, per instance
  snapshot  its size and write time (FSM encoding and file), once every node
            has snapshotted the table (filler writes pass the threshold)
  restore   a follower restarted (SIGTERM): raft's restore of the snapshot,
            and the restart until it has applied the leader's last write
  catch-up  a follower killed (SIGKILL), removed from the cluster, its data
            dir deleted, started with --join: until it has applied the
            leader's last write (the table hashes are then checked equal)
  lookups   GET /v1/lookup/TYPE on random types, spread over the nodes

Restarts and catch-ups run --repeat times, the followers in turn; the
table shows medians. Type t<k> holds instances k*per-type ..
(k+1)*per-type-1, so every size has size/per-type types. The agents run
with --pprof, --snapshot-threshold 1024, --trailing-logs 1024 and
--snapshot-interval 1s (as the catch-up measurement of
docs/reliability.md), plus --agent-flag.`,
		Example: `  lieur bench scale --sizes 10000,100000,1000000 --runs 3`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, s := range strings.Split(sizes, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil || n < 1 {
					return fmt.Errorf("--sizes %q: want a list such as 10000,100000", sizes)
				}
				if len(cfg.sizes) > 0 && n <= cfg.sizes[len(cfg.sizes)-1] {
					return fmt.Errorf("--sizes %q: want growing sizes", sizes)
				}
				cfg.sizes = append(cfg.sizes, n)
			}
			if cfg.clients < 1 || cfg.perType < 1 || cfg.lookupClients < 1 || cfg.runs < 1 || cfg.lookupRuns < 1 || cfg.repeat < 1 {
				return errors.New("--clients, --per-type, --lookup-clients, --runs, --lookup-runs and --repeat must be at least 1")
			}
			var runs [][]scaleRow
			for r := 0; r < cfg.runs; r++ {
				fmt.Fprintf(os.Stderr, "run %d of %d\n", r+1, cfg.runs)
				rows, err := runScale(cmd.Context(), cfg)
				if err != nil {
					return err
				}
				runs = append(runs, rows)
			}
			med := medianRows(runs)
			if cfg.json {
				return printJSON(cmd.OutOrStdout(), map[string]any{"runs": runs, "median": med})
			}
			printScaleTable(cmd.OutOrStdout(), cfg, med)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&sizes, "sizes", "10000,100000,1000000", "table sizes to reach, growing, comma-separated")
	f.IntVar(&cfg.clients, "clients", 64, "concurrent registering clients")
	f.IntVar(&cfg.perType, "per-type", 100, "instances per service type")
	f.IntVar(&cfg.lookupClients, "lookup-clients", 16, "concurrent lookup clients")
	f.DurationVar(&cfg.lookupDuration, "lookup-duration", 3*time.Second, "length of one lookup run")
	f.IntVar(&cfg.lookupRuns, "lookup-runs", 3, "lookup runs at each size (the median is kept)")
	f.BoolVar(&cfg.rejoinAsIs, "rejoin-as-is", false, "start a wiped node with --join while the cluster still lists it (default: DELETE /v1/cluster/members/ID first)")
	f.IntVar(&cfg.repeat, "repeat", 3, "restarts, and wipes with catch-up, at each size (the medians are kept)")
	f.IntVar(&cfg.runs, "runs", 1, "whole runs, each on a fresh cluster; the table shows medians")
	f.StringSliceVar(&cfg.agentFlags, "agent-flag", nil, "extra flag for every agent, e.g. --agent-flag=--log-level=warn")
	f.StringVar(&cfg.profile, "profile", "", "save CPU profiles here: the leader's during the registrations, the wiped node's during its catch-up")
	f.DurationVar(&cfg.profileFor, "profile-for", 10*time.Second, "length of each --profile (a duration, e.g. 20s)")
	f.BoolVar(&cfg.keep, "keep", false, "keep the data directory (printed) instead of deleting it")
	f.BoolVar(&cfg.json, "json", false, "print every run's rows and the medians as JSON")
	return cmd
}

func printScaleTable(out io.Writer, cfg scaleConfig, rows []scaleRow) {
	fmt.Fprintf(out, "%d run(s), medians; %d registering clients, %d instances per type, lookups: %d clients, %d x %s\n\n",
		cfg.runs, cfg.clients, cfg.perType, cfg.lookupClients, cfg.lookupRuns, cfg.lookupDuration)
	fmt.Fprintln(out, "| instances | registrations/s | heap B/instance (leader / caught-up node) | snapshot | snapshot write | restore (restart to caught up) | catch-up after wipe (snapshot installed at) | lookup p50 / p99 ms | lookups/s |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		install := ""
		if !r.InstallSnapshot {
			install = ", log replay"
		}
		fmt.Fprintf(out, "| %s | %.0f | %.0f / %.0f | %s | %s | %s (%s) | %s (%s%s) | %.2f / %.2f | %.0f |\n",
			thousands(r.Instances), r.RegisterOpsPerS, r.HeapPerInstance, r.HeapCaughtUp, mib(r.SnapshotBytes),
			ms(r.SnapshotWriteMs), ms(r.RestoreMs), ms(r.RestartMs), ms(r.CatchUpMs), ms(r.InstalledMs), install,
			r.LookupP50Ms, r.LookupP99Ms, r.LookupOpsPerS)
	}
}

func thousands(n int) string {
	s := strconv.Itoa(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString(" ")
		}
		b.WriteRune(c)
	}
	return b.String()
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func ms(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.2f s", v/1000)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// medianRows takes, per size and per column, the median over the runs.
func medianRows(runs [][]scaleRow) []scaleRow {
	if len(runs) == 1 {
		return runs[0]
	}
	out := make([]scaleRow, len(runs[0]))
	for i := range out {
		col := func(get func(scaleRow) float64) float64 {
			var v []float64
			for _, r := range runs {
				v = append(v, get(r[i]))
			}
			sort.Float64s(v)
			return v[len(v)/2]
		}
		row := runs[0][i]
		row.RegisterOpsPerS = col(func(r scaleRow) float64 { return r.RegisterOpsPerS })
		row.RegisterSeconds = col(func(r scaleRow) float64 { return r.RegisterSeconds })
		row.HeapPerInstance = col(func(r scaleRow) float64 { return r.HeapPerInstance })
		row.HeapCaughtUp = col(func(r scaleRow) float64 { return r.HeapCaughtUp })
		row.SnapshotBytes = int64(col(func(r scaleRow) float64 { return float64(r.SnapshotBytes) }))
		row.SnapshotWriteMs = col(func(r scaleRow) float64 { return r.SnapshotWriteMs })
		row.RestoreMs = col(func(r scaleRow) float64 { return r.RestoreMs })
		row.RestartMs = col(func(r scaleRow) float64 { return r.RestartMs })
		row.CatchUpMs = col(func(r scaleRow) float64 { return r.CatchUpMs })
		row.InstalledMs = col(func(r scaleRow) float64 { return r.InstalledMs })
		row.Elections = int(col(func(r scaleRow) float64 { return float64(r.Elections) }))
		row.LookupOpsPerS = col(func(r scaleRow) float64 { return r.LookupOpsPerS })
		row.LookupP50Ms = col(func(r scaleRow) float64 { return r.LookupP50Ms })
		row.LookupP99Ms = col(func(r scaleRow) float64 { return r.LookupP99Ms })
		for _, r := range runs {
			row.InstallSnapshot = row.InstallSnapshot && r[i].InstallSnapshot
			row.LookupErrors += r[i].LookupErrors
			row.RegisterFailures += r[i].RegisterFailures
		}
		out[i] = row
	}
	return out
}

func runScale(ctx context.Context, cfg scaleConfig) ([]scaleRow, error) {
	if cfg.profile != "" {
		if err := os.MkdirAll(cfg.profile, 0o755); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "lieur-scale-")
	if err != nil {
		return nil, err
	}
	if cfg.keep {
		fmt.Fprintf(os.Stderr, "data in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	c, err := startScaleCluster(ctx, dir, cfg.agentFlags)
	if err != nil {
		return nil, err
	}
	defer c.stopAll()
	began := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "  [%5.1fs] "+format+"\n", append([]any{time.Since(began).Seconds()}, args...)...)
	}
	// Each node's heap before any registration.
	base := make([]uint64, len(c.nodes))
	for i := range c.nodes {
		if base[i], err = c.heap(ctx, i); err != nil {
			return nil, err
		}
	}
	var rows []scaleRow
	have := 0
	for _, size := range cfg.sizes {
		row := scaleRow{Instances: size}
		leader, err := c.leader(ctx)
		if err != nil {
			return nil, err
		}

		// Registrations, from have to size.
		if cfg.profile != "" {
			go c.profile(ctx, leader, cfg.profileFor, filepath.Join(cfg.profile, fmt.Sprintf("register-%d.pb.gz", size)))
		}
		term0, _ := c.metric(ctx, c.nodes[leader].url, "lieur_raft_term")
		var failures int64
		var fmu sync.Mutex
		reg := runLoad(ctx, benchConfig{clients: cfg.clients, count: size - have, target: "lieur"}, "register",
			func(ctx context.Context, hc *http.Client, w, seq int) error {
				i := have + seq
				body := wire.RegisterRequest{ID: fmt.Sprintf("s-%07d", i), Type: fmt.Sprintf("t%d", i/cfg.perType), Address: "10.0.0.1", Port: 1 + i%60000,
					Meta: map[string]string{"zone": "a"}}
				var err error
				for attempt := 0; attempt < 50; attempt++ {
					if _, err = send(ctx, hc, "POST", c.nodes[(w+attempt)%len(c.nodes)].url+"/v1/services", body, 200); err == nil {
						return nil
					}
					fmu.Lock()
					failures++
					fmu.Unlock()
					time.Sleep(100 * time.Millisecond)
				}
				return err
			})
		if reg.Errors > 0 {
			return nil, fmt.Errorf("%d registrations failed", reg.Errors)
		}
		row.RegisterOpsPerS, row.RegisterSeconds, row.RegisterFailures = reg.OpsPerS, reg.Seconds, failures
		have = size
		logf("%d instances: %d registered in %.1fs, %.0f/s (p50 %.1f ms, p99 %.1f ms), %d retried", size, reg.Ops, reg.Seconds, reg.OpsPerS, reg.P50Ms, reg.P99Ms, failures)
		if leader, err = c.leader(ctx); err != nil {
			return nil, err
		}
		if term, err := c.metric(ctx, c.nodes[leader].url, "lieur_raft_term"); err == nil {
			row.Elections = int(term - term0)
		}
		if row.Elections > 0 {
			logf("the raft term moved %d times during the registrations (leader now %s)", row.Elections, c.nodes[leader].ID)
		}
		target, loaded, err := c.converge(ctx, leader)
		if err != nil {
			return nil, err
		}
		if target.Services != size {
			return nil, fmt.Errorf("the leader holds %d services, want %d", target.Services, size)
		}

		// Snapshots: filler writes (one instance registered and removed,
		// each its own entry) pass the snapshot threshold on every node.
		for k := 0; k < 1100; k += 2 {
			if _, err := c.nudge(ctx, leader); err != nil {
				return nil, err
			}
		}
		var writes []float64
		var snapNotes []string
		for i := range c.nodes {
			deadline := time.Now().Add(3 * time.Minute)
			for {
				m, took, err := latestSnapshot(c.nodes[i].DataDir)
				if err == nil && m.Index >= loaded {
					writes = append(writes, float64(took)/float64(time.Millisecond))
					if i == leader {
						row.SnapshotBytes = m.Size
					}
					snapNotes = append(snapNotes, fmt.Sprintf("%s %s in %s", c.nodes[i].ID, mib(m.Size), took.Round(time.Millisecond)))
					break
				}
				if time.Now().After(deadline) {
					return nil, fmt.Errorf("%s: no snapshot past index %d: %v", c.nodes[i].ID, loaded, err)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		sort.Float64s(writes)
		row.SnapshotWriteMs = writes[len(writes)/2]
		logf("snapshots: %s", strings.Join(snapNotes, ", "))

		// Heap per instance, each node, once no snapshot is being written
		// (a snapshot in progress holds its own references).
		for quiet := 0; quiet < 2; {
			time.Sleep(1500 * time.Millisecond)
			quiet++
			for _, n := range c.nodes {
				if snapshotInProgress(n.DataDir) {
					quiet = 0
				}
			}
		}
		var heaps []string
		for i := range c.nodes {
			h, err := c.heap(ctx, i)
			if err != nil {
				return nil, err
			}
			per := (float64(h) - float64(base[i])) / float64(size)
			if i == leader {
				row.HeapPerInstance = per
			}
			heaps = append(heaps, fmt.Sprintf("%s %.0f B (heap %.0f MiB)", c.nodes[i].ID, per, float64(h)/(1<<20)))
		}
		logf("heap per instance: %s (leader %s)", strings.Join(heaps, ", "), c.nodes[leader].ID)

		followers := []int{(leader + 1) % 3, (leader + 2) % 3}
		median := func(v []float64) float64 {
			sort.Float64s(v)
			return v[len(v)/2]
		}

		// Restore: a follower restarted (SIGTERM), --repeat times, the
		// followers in turn.
		var restores, restarts []float64
		for k := 0; k < cfg.repeat; k++ {
			now, err := c.nudge(ctx, leader)
			if err != nil {
				return nil, err
			}
			r := followers[k%2]
			if _, err := c.waitApplied(ctx, r, now, time.Minute); err != nil {
				return nil, err
			}
			c.stop(r, syscall.SIGTERM)
			if err := c.start(r, ""); err != nil {
				return nil, err
			}
			at, err := c.waitApplied(ctx, r, now, 10*time.Minute)
			if err != nil {
				return nil, err
			}
			restart := float64(at.Sub(c.nodes[r].start)) / float64(time.Millisecond)
			restore := -1.0
			if s, ok := c.logged(r, "starting restore from snapshot"); ok {
				if e, ok := c.logged(r, "restored from snapshot"); ok {
					restore = float64(e.at.Sub(s.at)) / float64(time.Millisecond)
				}
			}
			restores, restarts = append(restores, restore), append(restarts, restart)
			logf("restart of %s: snapshot restored in %s, applied the leader's index %s after start", c.nodes[r].ID, ms(restore), ms(restart))
		}
		row.RestoreMs, row.RestartMs = median(restores), median(restarts)

		// Catch-up: a follower killed, its data dir deleted, started
		// again with --join, --repeat times, the followers in turn.
		var catchUps, installs []float64
		row.InstallSnapshot = true
		for k := 0; k < cfg.repeat; k++ {
			w := followers[(k+1)%2]
			now, err := c.nudge(ctx, leader)
			if err != nil {
				return nil, err
			}
			c.stop(w, syscall.SIGKILL)
			if !cfg.rejoinAsIs {
				// Its old membership goes first, while it is down: see
				// rejoinAsIs.
				// The leader refuses while it has not heard from the other
				// follower lately (one restarted just before): try again.
				for attempt := 0; ; attempt++ {
					_, err := send(ctx, c.hc, "DELETE", c.nodes[leader].url+"/v1/cluster/members/"+c.nodes[w].ID, nil, 200)
					if err == nil {
						break
					}
					if attempt == 120 {
						return nil, fmt.Errorf("remove %s: %w", c.nodes[w].ID, err)
					}
					time.Sleep(500 * time.Millisecond)
				}
			}
			if err := os.RemoveAll(c.nodes[w].DataDir); err != nil {
				return nil, err
			}
			if err := os.MkdirAll(c.nodes[w].DataDir, 0o750); err != nil {
				return nil, err
			}
			if err := c.start(w, c.nodes[leader].url); err != nil {
				return nil, err
			}
			if cfg.profile != "" && k == 0 {
				go c.profile(ctx, w, cfg.profileFor, filepath.Join(cfg.profile, fmt.Sprintf("catchup-%d.pb.gz", size)))
			}
			at, err := c.waitApplied(ctx, w, now, 10*time.Minute)
			if err != nil {
				return nil, err
			}
			catchUp := float64(at.Sub(c.nodes[w].start)) / float64(time.Millisecond)
			installed := -1.0
			if l, ok := c.logged(w, "Installed remote snapshot"); ok {
				installed = float64(l.at.Sub(c.nodes[w].start)) / float64(time.Millisecond)
			} else {
				row.InstallSnapshot = false
			}
			catchUps, installs = append(catchUps, catchUp), append(installs, installed)
			if _, _, err := c.converge(ctx, leader); err != nil {
				return nil, fmt.Errorf("after the catch-up of %s: %w", c.nodes[w].ID, err)
			}
			var steps []string
			for _, s := range []string{"joined cluster", "copied to local snapshot", "Installed remote snapshot", "caught up with the leader"} {
				if l, ok := c.logged(w, s); ok {
					steps = append(steps, fmt.Sprintf("%s +%s", s, l.at.Sub(c.nodes[w].start).Round(time.Millisecond)))
				}
			}
			logf("catch-up of %s after a wipe: %s (%s)", c.nodes[w].ID, ms(catchUp), strings.Join(steps, ", "))
			if k == 0 {
				if h, err := c.heap(ctx, w); err == nil {
					row.HeapCaughtUp = (float64(h) - float64(base[w])) / float64(size)
				}
			}
		}
		row.CatchUpMs, row.InstalledMs = median(catchUps), median(installs)

		// Lookups on random types, spread over the nodes; every type is
		// read once on every node first.
		types := size / cfg.perType
		urls := make([]string, len(c.nodes))
		for i, n := range c.nodes {
			urls[i] = n.url
		}
		warm := runLoad(ctx, benchConfig{clients: cfg.lookupClients, count: types * len(urls), target: "lieur"}, "lookup",
			func(ctx context.Context, hc *http.Client, _, seq int) error {
				_, err := send(ctx, hc, "GET", fmt.Sprintf("%s/v1/lookup/t%d", urls[seq%len(urls)], seq/len(urls)), nil, 200)
				return err
			})
		if warm.Errors > 0 {
			return nil, fmt.Errorf("warm-up: %d lookups failed", warm.Errors)
		}
		var lrs []benchResult
		for k := 0; k < cfg.lookupRuns; k++ {
			lr := runLoad(ctx, benchConfig{clients: cfg.lookupClients, duration: cfg.lookupDuration, target: "lieur"}, "lookup",
				func(ctx context.Context, hc *http.Client, w, _ int) error {
					_, err := send(ctx, hc, "GET", fmt.Sprintf("%s/v1/lookup/t%d", urls[w%len(urls)], rand.IntN(types)), nil, 200)
					return err
				})
			logf("lookups: %s", lr)
			lrs = append(lrs, lr)
			row.LookupErrors += lr.Errors
		}
		sort.Slice(lrs, func(i, j int) bool { return lrs[i].P50Ms < lrs[j].P50Ms })
		row.LookupP50Ms = lrs[len(lrs)/2].P50Ms
		sort.Slice(lrs, func(i, j int) bool { return lrs[i].P99Ms < lrs[j].P99Ms })
		row.LookupP99Ms = lrs[len(lrs)/2].P99Ms
		sort.Slice(lrs, func(i, j int) bool { return lrs[i].OpsPerS < lrs[j].OpsPerS })
		row.LookupOpsPerS = lrs[len(lrs)/2].OpsPerS
		rows = append(rows, row)
	}
	return rows, nil
}
