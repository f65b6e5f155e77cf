package main

// The cluster `lieur bench scale` measures: three agent processes of this
// binary on loopback, and what the measurement asks of them.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lieur/lieur/transport/wire"
)

// scaleNode is one agent process of the scale cluster.
type scaleNode struct {
	devNode
	url   string
	cmd   *exec.Cmd
	exit  chan struct{}
	start time.Time

	mu    sync.Mutex
	lines []logLine // this process's log, but for the per-service lines
	// logPath keeps the same lines of every process of this node (with
	// --keep, for a look at the elections or the catch-up afterwards).
	logPath string
}

type logLine struct {
	at   time.Time // hclog's timestamp
	text string
}

type scaleCluster struct {
	exe   string
	peers string
	flags []string
	nodes []*scaleNode
	hc    *http.Client
}

func startScaleCluster(ctx context.Context, dir string, extra []string) (*scaleCluster, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	layout, err := loadOrCreateLayout(dir, 3)
	if err != nil {
		return nil, err
	}
	c := &scaleCluster{exe: exe, hc: &http.Client{Timeout: time.Minute}}
	c.flags = append([]string{"--pprof", "--log-level", "info", "--snapshot-threshold", "1024", "--trailing-logs", "1024", "--snapshot-interval", "1s"}, extra...)
	var peers []string
	for _, n := range layout.Nodes {
		peers = append(peers, n.ID+"="+n.RaftAddr)
		c.nodes = append(c.nodes, &scaleNode{devNode: n, url: "http://" + n.HTTPAddr, logPath: filepath.Join(dir, n.ID+".log")})
	}
	c.peers = strings.Join(peers, ",")
	for i := range c.nodes {
		if err := c.start(i, ""); err != nil {
			c.stopAll()
			return nil, err
		}
	}
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, n.url)
	}
	if err := awaitAll(ctx, urls, "/v1/status", `"caught_up":true`); err != nil {
		c.stopAll()
		return nil, err
	}
	return c, nil
}

// start runs node i's agent: with its peers, or with join (a URL) to ask
// an existing cluster to add it.
func (c *scaleCluster) start(i int, join string) error {
	n := c.nodes[i]
	args := []string{"agent", "--id", n.ID, "--raft-addr", n.RaftAddr, "--http-addr", n.HTTPAddr, "--data-dir", n.DataDir}
	if join != "" {
		args = append(args, "--join", join)
	} else {
		args = append(args, "--peers", c.peers)
	}
	cmd := exec.Command(c.exe, append(args, c.flags...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.lines = nil
	n.mu.Unlock()
	logFile, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	n.start = time.Now()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	n.cmd, n.exit = cmd, make(chan struct{})
	go func() {
		defer logFile.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			// One line per service learned or removed: millions here.
			if strings.Contains(line, " new service: ") || strings.Contains(line, " removed service: ") {
				continue
			}
			at, _ := time.Parse("2006-01-02T15:04:05.000Z0700", strings.SplitN(line, " ", 2)[0])
			n.mu.Lock()
			n.lines = append(n.lines, logLine{at, line})
			n.mu.Unlock()
			_, _ = logFile.WriteString(line + "\n")
		}
		_, _ = io.Copy(io.Discard, stderr)
		_ = cmd.Wait()
		close(n.exit)
	}()
	return nil
}

// stop ends node i's process with sig and waits for it.
func (c *scaleCluster) stop(i int, sig syscall.Signal) {
	n := c.nodes[i]
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(sig)
	select {
	case <-n.exit:
	case <-time.After(20 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.exit
	}
	n.cmd = nil
}

func (c *scaleCluster) stopAll() {
	for i := range c.nodes {
		c.stop(i, syscall.SIGTERM)
	}
}

// logged returns the first line of node i's current process containing s.
func (c *scaleCluster) logged(i int, s string) (logLine, bool) {
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, l := range n.lines {
		if strings.Contains(l.text, s) {
			return l, true
		}
	}
	return logLine{}, false
}

func (c *scaleCluster) tail(i, k int) string {
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, l := range n.lines[max(0, len(n.lines)-k):] {
		out = append(out, l.text)
	}
	return strings.Join(out, "\n")
}

// status is node i's /v1/status. It hashes the whole table: not for
// tight loops at large sizes.
func (c *scaleCluster) status(ctx context.Context, i int) (wire.Status, error) {
	var st wire.Status
	data, err := send(ctx, c.hc, "GET", c.nodes[i].url+"/v1/status", nil, 200)
	if err == nil {
		err = json.Unmarshal(data, &st)
	}
	return st, err
}

func (c *scaleCluster) metric(ctx context.Context, base, name string) (float64, error) {
	data, err := send(ctx, c.hc, "GET", base+"/metrics", nil, 200)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", base, name)
}

// heap is node i's live heap: HeapAlloc right after a forced GC.
func (c *scaleCluster) heap(ctx context.Context, i int) (uint64, error) {
	data, err := send(ctx, c.hc, "GET", c.nodes[i].url+"/debug/pprof/heap?gc=1&debug=1", nil, 200)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "# HeapAlloc = "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no HeapAlloc in the heap profile")
}

// profile saves a CPU profile of node i, as soon as it answers, to path.
func (c *scaleCluster) profile(ctx context.Context, i int, d time.Duration, path string) {
	url := c.nodes[i].url
	for k := 0; k < 500; k++ {
		if _, err := send(ctx, c.hc, "GET", url+"/healthz", nil, 200); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	hc := &http.Client{Timeout: d + time.Minute}
	data, err := send(ctx, hc, "GET", fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", url, int(d.Seconds())), nil, 200)
	if err == nil {
		err = os.WriteFile(path, data, 0o640)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "profile of %s: %v\n", c.nodes[i].ID, err)
	}
}

func (c *scaleCluster) leader(ctx context.Context) (int, error) {
	for attempt := 0; attempt < 100; attempt++ {
		for i := range c.nodes {
			if c.nodes[i].cmd == nil {
				continue
			}
			if v, err := c.metric(ctx, c.nodes[i].url, `lieur_raft_state{state="leader"}`); err == nil && v == 1 {
				return i, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, errors.New("no leader")
}

// waitApplied waits until node i has applied index and returns when it
// saw it so. It asks GET /v1/lookup/t0?stale=true&min_index=N, which the
// node holds until it has applied N (then 200, or 404 without t0) or for
// a while (503): a blocking read, where polling /metrics would cost the
// node a scrape of every type's gauge each time.
func (c *scaleCluster) waitApplied(ctx context.Context, i int, index uint64, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	url := fmt.Sprintf("%s/v1/lookup/t0?stale=true&min_index=%d", c.nodes[i].url, index)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return time.Time{}, err
		}
		if resp, err := c.hc.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound {
				return time.Now(), nil
			}
			if resp.StatusCode != http.StatusServiceUnavailable {
				return time.Time{}, fmt.Errorf("%s: %s answered %d", c.nodes[i].ID, url, resp.StatusCode)
			}
		} else {
			// Not serving yet (a restart restores its snapshot first).
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				return time.Time{}, ctx.Err()
			}
		}
		select {
		case <-c.nodes[i].exit:
			return time.Time{}, fmt.Errorf("%s exited:\n%s", c.nodes[i].ID, c.tail(i, 20))
		default:
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s has not applied %d after %s:\n%s", c.nodes[i].ID, index, limit, c.tail(i, 20))
		}
	}
}

// nudge writes through the leader (one instance registered and
// removed) and returns the index of the removal. It is the target of the
// waits below: ?min_index= waits for the table's applied index, which
// raft's own entries (barriers, configuration changes) do not move, and a
// follower learns that the last entry committed only with a later one.
func (c *scaleCluster) nudge(ctx context.Context, leader int) (uint64, error) {
	filler := wire.RegisterRequest{ID: "scale-filler", Type: "scale-filler", Address: "10.0.0.2", Port: 1}
	if _, err := send(ctx, c.hc, "POST", c.nodes[leader].url+"/v1/services", filler, 200); err != nil {
		return 0, fmt.Errorf("filler: %w", err)
	}
	data, err := send(ctx, c.hc, "DELETE", c.nodes[leader].url+"/v1/services/scale-filler", nil, 200)
	if err != nil {
		return 0, fmt.Errorf("filler: %w", err)
	}
	var resp wire.IndexResponse
	if err := json.Unmarshal(data, &resp); err != nil || resp.Index == 0 {
		return 0, fmt.Errorf("filler: answer %s", data)
	}
	return resp.Index, nil
}

// converge waits until every node has applied a write made now and
// reports the same table hash as the leader, and returns the leader's
// status and that write's index.
func (c *scaleCluster) converge(ctx context.Context, leader int) (wire.Status, uint64, error) {
	idx, err := c.nudge(ctx, leader)
	if err != nil {
		return wire.Status{}, 0, err
	}
	target, err := c.status(ctx, leader)
	if err != nil {
		return target, idx, err
	}
	for i := range c.nodes {
		if i == leader {
			continue
		}
		if _, err := c.waitApplied(ctx, i, idx, 5*time.Minute); err != nil {
			return target, idx, err
		}
		st, err := c.status(ctx, i)
		if err != nil {
			return target, idx, err
		}
		if st.TableHash != target.TableHash || st.Services != target.Services {
			return target, idx, fmt.Errorf("%s: table hash %s (%d services) at applied %d, leader %s (%d services) at %d",
				c.nodes[i].ID, st.TableHash, st.Services, st.AppliedIndex, target.TableHash, target.Services, target.AppliedIndex)
		}
	}
	return target, idx, nil
}

// snapshotMeta is the part of raft's meta.json this reads.
type snapshotMeta struct {
	ID    string
	Index uint64
	Size  int64
}

// latestSnapshot is the newest complete snapshot in a node's data dir,
// and how long writing it took: meta.json's modification time (written
// last, once the state is synced) less the creation time in the id
// (term-index-milliseconds).
func latestSnapshot(dataDir string) (snapshotMeta, time.Duration, error) {
	dirs, err := os.ReadDir(filepath.Join(dataDir, "snapshots"))
	if err != nil {
		return snapshotMeta{}, 0, err
	}
	var best snapshotMeta
	var took time.Duration
	for _, d := range dirs {
		if !d.IsDir() || strings.HasSuffix(d.Name(), ".tmp") {
			continue
		}
		path := filepath.Join(dataDir, "snapshots", d.Name(), "meta.json")
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var m snapshotMeta
		if json.Unmarshal(data, &m) != nil || m.Index < best.Index {
			continue
		}
		fi, err := os.Stat(path)
		parts := strings.Split(m.ID, "-")
		if err != nil || len(parts) != 3 {
			continue
		}
		msec, err := strconv.ParseInt(parts[2], 10, 64)
		if err != nil {
			continue
		}
		best, took = m, fi.ModTime().Sub(time.UnixMilli(msec))
	}
	if best.ID == "" {
		return best, 0, errors.New("no snapshot")
	}
	return best, took, nil
}

// snapshotInProgress reports whether raft is writing a snapshot in
// dataDir (its directory is named *.tmp until complete).
func snapshotInProgress(dataDir string) bool {
	dirs, _ := os.ReadDir(filepath.Join(dataDir, "snapshots"))
	for _, d := range dirs {
		if strings.HasSuffix(d.Name(), ".tmp") {
			return true
		}
	}
	return false
}
