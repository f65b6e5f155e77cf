package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// newBenchCompareCmd runs the same workloads against a local 3-node lieur
// cluster and a local 3-member etcd cluster, and prints medians.
func newBenchCompareCmd() *cobra.Command {
	var etcdBin, clientsFlag, etcdClient string
	var runs int
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "compare",
		Short: "Start 3 lieur agents and 3 etcd members on loopback and compare them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			etcdTarget, ok := map[string]string{"native": "etcd", "native-shared": "etcd-shared", "gateway": "etcd-gateway"}[etcdClient]
			if !ok {
				return fmt.Errorf("--etcd-client %q: want native, native-shared or gateway", etcdClient)
			}
			var clients []int
			for _, c := range strings.Split(clientsFlag, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(c))
				if err != nil || n < 1 {
					return fmt.Errorf("--clients %q: want a list such as 1,16,64", clientsFlag)
				}
				clients = append(clients, n)
			}
			dir, err := os.MkdirTemp("", "lieur-compare-")
			if err != nil {
				return err
			}
			defer removeUnlessFailed(dir, &err)
			ctx := cmd.Context()
			lieur, stopLieur, err := startLieurCluster(ctx, dir)
			if err != nil {
				return err
			}
			defer stopLieur()
			etcd, stopEtcd, err := startEtcdCluster(ctx, etcdBin, dir)
			if err != nil {
				return err
			}
			defer stopEtcd()
			return compare(ctx, cmd.OutOrStdout(), lieur, etcd, etcdTarget, clients, runs, duration)
		},
	}
	cmd.Flags().StringVar(&etcdBin, "etcd", "/usr/bin/etcd", "the etcd binary (Debian's etcd-server)")
	cmd.Flags().StringVar(&clientsFlag, "clients", "1,16,64", "client counts to run")
	cmd.Flags().StringVar(&etcdClient, "etcd-client", "native-shared", "how to drive etcd: native (its Go gRPC client, go.etcd.io/etcd/client/v3, one per client), native-shared (one per etcd member, shared by its clients) or gateway (its v3 JSON gateway over HTTP/1.1)")
	cmd.Flags().IntVar(&runs, "runs", 3, "runs of each cell; the table shows medians")
	cmd.Flags().DurationVar(&duration, "duration", 5*time.Second, "length of each run")
	return cmd
}

func compare(ctx context.Context, out io.Writer, lieur, etcd []string, etcdTarget string, clients []int, runs int, d time.Duration) error {
	median := func(rs []benchResult) benchResult {
		sort.Slice(rs, func(i, j int) bool { return rs[i].OpsPerS < rs[j].OpsPerS })
		return rs[len(rs)/2]
	}
	// The runs of lieur and etcd alternate, so that other work on the
	// machine weighs on both alike. Client w talks to node (w+r) mod 3 in
	// run r: with one client, each run starts at another node, so the
	// leader is hit in one run of three on both sides, whichever node
	// each cluster elected.
	cell := func(mode string, c int) (l, e benchResult, err error) {
		var ls, es []benchResult
		for r := 0; r < runs; r++ {
			for _, side := range []struct {
				target  string
				binders []string
				out     *[]benchResult
			}{{"lieur", lieur, &ls}, {etcdTarget, etcd, &es}} {
				nodes := append(append([]string(nil), side.binders[r%len(side.binders):]...), side.binders[:r%len(side.binders)]...)
				cfg := benchConfig{binders: nodes, target: side.target, clients: c, duration: d, typ: "cmp", ratio: 0.9}
				res, err := runBench(ctx, cfg, mode)
				if err != nil {
					return l, e, fmt.Errorf("%s %s x%d: %w", side.target, mode, c, err)
				}
				fmt.Fprintf(os.Stderr, "  %s\n", res)
				*side.out = append(*side.out, res)
			}
		}
		return median(ls), median(es), nil
	}
	fmt.Fprintf(out, "etcd driven through: %s\n\n", map[string]string{"etcd": "its native Go client (gRPC), one per client", "etcd-shared": "its native Go client (gRPC), one per member shared by its clients", "etcd-gateway": "its v3 JSON gateway"}[etcdTarget])
	fmt.Fprintf(out, "| workload | clients | lieur ops/s | etcd ops/s | lieur/etcd | lieur p50 ms | etcd p50 ms | lieur p99 ms | etcd p99 ms | lieur errors | etcd errors |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, mode := range []string{"lookup", "register"} {
		for _, c := range clients {
			l, e, err := cell(mode, c)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "| %s | %d | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f | %d | %d |\n", mode, c, l.OpsPerS, e.OpsPerS, l.OpsPerS/e.OpsPerS, l.P50Ms, e.P50Ms, l.P99Ms, e.P99Ms, l.Errors, e.Errors)
		}
	}
	for _, c := range clients {
		var rs []benchResult
		for r := 0; r < runs; r++ {
			res, err := benchCeiling(ctx, benchConfig{clients: c, duration: d})
			if err != nil {
				return err
			}
			rs = append(rs, res)
		}
		m := median(rs)
		fmt.Fprintf(out, "| ceiling (bare net/http, in-process) | %d | %.0f | | | %.2f | | %.2f | | | |\n", c, m.OpsPerS, m.P50Ms, m.P99Ms)
	}
	return nil
}

// removeUnlessFailed removes a bench's working directory dir once it is
// done; a run that failed (*err set) keeps it, so that the logs its error
// points at are still there, and the error says where.
func removeUnlessFailed(dir string, err *error) {
	if *err == nil {
		os.RemoveAll(dir)
		return
	}
	*err = fmt.Errorf("%w (kept %s)", *err, dir)
}

func stopAll(ps []*exec.Cmd) {
	for _, p := range ps {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range ps {
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
		}
	}
}

func startLieurCluster(ctx context.Context, dir string) ([]string, func(), error) {
	layout, err := loadOrCreateLayout(filepath.Join(dir, "lieur"), 3)
	if err != nil {
		return nil, nil, err
	}
	return startLieurAgents(ctx, layout, nil, nil)
}

// startLieurAgents starts layout's agents, each command line behind
// prefix (a taskset, say) and with the flags extra gives it, and waits
// until every one has caught up; it returns their URLs and how to stop
// them.
func startLieurAgents(ctx context.Context, layout devLayout, prefix []string, extra func(devNode) []string) ([]string, func(), error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	var peers, urls []string
	for _, n := range layout.Nodes {
		peers = append(peers, n.ID+"="+n.RaftAddr)
		urls = append(urls, "http://"+n.HTTPAddr)
	}
	var procs []*exec.Cmd
	for _, n := range layout.Nodes {
		args := append(append([]string(nil), prefix...), exe, "agent", "--id", n.ID, "--raft-addr", n.RaftAddr, "--http-addr", n.HTTPAddr,
			"--data-dir", n.DataDir, "--peers", strings.Join(peers, ","), "--log-level", "warn")
		if extra != nil {
			args = append(args, extra(n)...)
		}
		c := exec.Command(args[0], args[1:]...)
		// The agents' logs go beside their data, out of the table's way
		// (a shutdown logs its closed connections).
		logFile, err := os.OpenFile(n.DataDir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			stopAll(procs)
			return nil, nil, err
		}
		c.Stderr = logFile
		err = c.Start()
		logFile.Close()
		if err != nil {
			stopAll(procs)
			return nil, nil, err
		}
		procs = append(procs, c)
	}
	stop := func() { stopAll(procs) }
	if err := awaitAll(ctx, urls, "/v1/status", `"caught_up":true`); err != nil {
		stop()
		return nil, nil, fmt.Errorf("lieur: %w (agents' logs: %s.log)", err, layout.Nodes[0].DataDir)
	}
	return urls, stop, nil
}

func startEtcdCluster(ctx context.Context, bin, dir string) ([]string, func(), error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, nil, fmt.Errorf("etcd binary %s: %w (apt-get install etcd-server)", bin, err)
	}
	ports, err := freePorts(6)
	if err != nil {
		return nil, nil, err
	}
	var initial, urls []string
	for i := 0; i < 3; i++ {
		initial = append(initial, fmt.Sprintf("e%d=http://127.0.0.1:%d", i+1, ports[2*i+1]))
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]))
	}
	var procs []*exec.Cmd
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("e%d", i+1)
		c := exec.Command(bin, "--name", name, "--data-dir", filepath.Join(dir, "etcd", name),
			"--listen-client-urls", urls[i], "--advertise-client-urls", urls[i],
			"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "lieur-compare", "--log-level", "warn")
		c.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH=")
		if err := c.Start(); err != nil {
			stopAll(procs)
			return nil, nil, err
		}
		procs = append(procs, c)
	}
	stop := func() { stopAll(procs) }
	if err := awaitAll(ctx, urls, "/health", "true"); err != nil {
		stop()
		return nil, nil, fmt.Errorf("etcd: %w", err)
	}
	return urls, stop, nil
}

// awaitAll waits, up to 30 s, until GET url+path answers 200 with a body
// containing want, on every url.
func awaitAll(ctx context.Context, urls []string, path, want string) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for _, u := range urls {
		for {
			data, err := send(ctx, hc, "GET", u+path, nil, 200)
			if err == nil && strings.Contains(string(data), want) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s not ready: %v", u, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}
