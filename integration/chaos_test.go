package integration

// The chaos harness: clients write and read against random nodes of a real
// 3-node cluster while a nemesis kills, stalls, wipes and restarts agents.
// Every run checks the recorded history for linearizability (porcupine),
// that nothing acknowledged was lost, that the nodes converge, and that no
// agent panicked or raced.
//
//	CHAOS_DURATION  how long the nemesis runs (default 20s; `make chaos`: 10m)
//	CHAOS_SEED      replay a run's choices (printed at the start of each run)

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/client"
	"github.com/lieur/lieur/transport/wire"
)

const (
	chaosTypes      = 3 // service types, each a partition of the history
	chaosIDsPerType = 5 // ids per type; few, so operations collide often
	chaosClients    = 3
)

// chaosInput and chaosOutput are one operation of the history.
type chaosInput struct {
	Op string // register, deregister, report, read (a list), lookup (one instance)
	ID string
}

type chaosOutput struct {
	// Kind: ok, notfound, removed, alive, unknown (the write may or may
	// not have happened), or for reads the sorted ids, comma-separated.
	Kind string
}

// chaosModel is a service type's set of ids. Its state is the sorted ids
// joined by commas, so states compare with ==.
var chaosModel = porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byType := map[string][]porcupine.Operation{}
		var types []string
		for _, op := range history {
			typ := op.Metadata.(string)
			if _, ok := byType[typ]; !ok {
				types = append(types, typ)
			}
			byType[typ] = append(byType[typ], op)
		}
		sort.Strings(types)
		var out [][]porcupine.Operation
		for _, t := range types {
			out = append(out, byType[t])
		}
		return out
	},
	Init: func() []interface{} { return []interface{}{""} },
	Step: func(state, input, output interface{}) []interface{} {
		s, in, out := state.(string), input.(chaosInput), output.(chaosOutput)
		with, without := setWith(s, in.ID), setWithout(s, in.ID)
		switch in.Op {
		case "register":
			if out.Kind == "unknown" {
				return []interface{}{s, with}
			}
			return []interface{}{with}
		case "deregister":
			switch out.Kind {
			case "ok":
				if s == without {
					return nil // it was not there to remove
				}
				return []interface{}{without}
			case "notfound":
				if s != without {
					return nil
				}
				return []interface{}{s}
			default:
				return []interface{}{s, without}
			}
		case "report":
			switch out.Kind {
			case "removed": // removed now, or found already gone
				return []interface{}{without}
			case "alive": // the server answered: nothing changes
				return []interface{}{s}
			default:
				return []interface{}{s, without}
			}
		case "read":
			if out.Kind == s {
				return []interface{}{s}
			}
			return nil
		case "lookup": // one instance of the type, or "" for none
			if (out.Kind == "" && s == "") || (out.Kind != "" && setWith(s, out.Kind) == s) {
				return []interface{}{s}
			}
			return nil
		}
		return nil
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(chaosInput), output.(chaosOutput)
		return fmt.Sprintf("%s(%s) -> %s", in.Op, in.ID, out.Kind)
	},
	DescribeState: func(state interface{}) string { return "{" + state.(string) + "}" },
}

func setWith(s, id string) string {
	ids := splitIDs(s)
	for _, x := range ids {
		if x == id {
			return s
		}
	}
	ids = append(ids, id)
	sort.Strings(ids)
	return strings.Join(ids, ",")
}

func setWithout(s, id string) string {
	var out []string
	for _, x := range splitIDs(s) {
		if x != id {
			out = append(out, x)
		}
	}
	return strings.Join(out, ",")
}

func splitIDs(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// history records operations from many goroutines.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(clientID int, typ string, in chaosInput, call int64, out chaosOutput, ret int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: clientID, Input: in, Call: call, Output: out, Return: ret, Metadata: typ})
}

// chaosID names id k of a type. Its port is fixed: even ids point at a live
// server, odd ones at a dead port, so reports have a stable truth.
func chaosID(typ string, k int) string { return fmt.Sprintf("%s-%d", typ, k) }

type chaosRun struct {
	t       *testing.T
	c       *cluster
	h       *history
	live    []int // ports of live servers
	dead    []int
	httpc   *http.Client
	lookups atomic.Int64
	lookErr atomic.Int64
}

func (r *chaosRun) port(k int) int {
	if k%2 == 0 {
		return r.live[k/2%len(r.live)]
	}
	return r.dead[k/2%len(r.dead)]
}

// do sends one request to a random node and classifies the answer:
// definite (with the status and body), not applied (the request never
// reached a node, or was refused before it could be applied), or unknown.
func (r *chaosRun) do(rng *rand.Rand, method, path string, body any, header http.Header) (status int, data []byte, outcome string) {
	n := r.c.nodes[rng.IntN(len(r.c.nodes))]
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, n.url()+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := r.httpc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return 0, nil, "not-applied"
		}
		return 0, nil, "unknown"
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	if resp.StatusCode == http.StatusServiceUnavailable {
		var e wire.Error
		_ = json.Unmarshal(buf.Bytes(), &e)
		switch e.Code {
		case wire.CodeNoLeader, wire.CodeNotLeader, wire.CodeCatchingUp, wire.CodeStale, wire.CodeBehind:
			return resp.StatusCode, buf.Bytes(), "not-applied"
		}
		return resp.StatusCode, buf.Bytes(), "unknown"
	}
	if resp.StatusCode >= 500 {
		return resp.StatusCode, buf.Bytes(), "unknown"
	}
	return resp.StatusCode, buf.Bytes(), "definite"
}

// client runs random operations until ctx ends.
func (r *chaosRun) client(ctx context.Context, id int, rng *rand.Rand, lookups *client.Client) {
	t := r.t
	for ctx.Err() == nil {
		typ := fmt.Sprintf("t%d", rng.IntN(chaosTypes))
		k := rng.IntN(chaosIDsPerType)
		sid := chaosID(typ, k)
		call := r.h.now()
		switch p := rng.IntN(100); {
		case p < 30:
			status, data, outcome := r.do(rng, "POST", "/v1/services", wire.RegisterRequest{ID: sid, Type: typ, Address: "127.0.0.1", Port: r.port(k)}, nil)
			switch {
			case outcome == "not-applied":
			case outcome == "unknown":
				r.h.add(id, typ, chaosInput{"register", sid}, call, chaosOutput{"unknown"}, math.MaxInt64)
			case status == 200:
				r.h.add(id, typ, chaosInput{"register", sid}, call, chaosOutput{"ok"}, r.h.now())
			default:
				t.Errorf("register %s: unexpected %d %s", sid, status, data)
			}
		case p < 45:
			hdr := http.Header{wire.HeaderRequestID: {fmt.Sprintf("c%d-%d", id, call)}}
			status, data, outcome := r.do(rng, "DELETE", "/v1/services/"+sid, nil, hdr)
			switch {
			case outcome == "not-applied":
			case outcome == "unknown":
				r.h.add(id, typ, chaosInput{"deregister", sid}, call, chaosOutput{"unknown"}, math.MaxInt64)
			case status == 200:
				r.h.add(id, typ, chaosInput{"deregister", sid}, call, chaosOutput{"ok"}, r.h.now())
			case status == 404:
				r.h.add(id, typ, chaosInput{"deregister", sid}, call, chaosOutput{"notfound"}, r.h.now())
			default:
				t.Errorf("deregister %s: unexpected %d %s", sid, status, data)
			}
		case p < 55:
			status, data, outcome := r.do(rng, "POST", "/v1/reports", wire.ReportRequest{ID: sid}, nil)
			var rr wire.ReportResponse
			switch {
			case outcome == "not-applied":
			case outcome == "unknown":
				r.h.add(id, typ, chaosInput{"report", sid}, call, chaosOutput{"unknown"}, math.MaxInt64)
			case status == 200 && json.Unmarshal(data, &rr) == nil:
				// A live server is never removed by a report; "removed"
				// without an index means it was already gone, which the
				// model checks.
				if k%2 == 0 && rr.Verdict == wire.VerdictRemoved && strings.Contains(string(data), `"index"`) {
					t.Errorf("report of live server %s removed it: %s", sid, data)
				}
				ret := r.h.now()
				if rr.Verdict == wire.VerdictUnknown {
					ret = math.MaxInt64
				}
				r.h.add(id, typ, chaosInput{"report", sid}, call, chaosOutput{rr.Verdict}, ret)
			case status == 404:
				// The id is unknown even after a consistent read: nothing
				// to record (no change).
			default:
				t.Errorf("report %s: unexpected %d %s", sid, status, data)
			}
		case p < 65:
			status, data, outcome := r.do(rng, "GET", "/v1/lookup/"+typ+"?consistent=true", nil, nil)
			switch {
			case outcome != "definite":
			case status == 200 || status == 404:
				var inst wire.Instance
				_ = json.Unmarshal(data, &inst)
				r.h.add(id, typ, chaosInput{"lookup", ""}, call, chaosOutput{inst.ID}, r.h.now())
			default:
				t.Errorf("consistent lookup of %s: unexpected %d %s", typ, status, data)
			}
		case p < 85:
			status, data, outcome := r.do(rng, "GET", "/v1/services/"+typ+"?consistent=true", nil, nil)
			switch {
			case outcome != "definite":
			case status == 200 || status == 404:
				var resp wire.ServicesResponse
				_ = json.Unmarshal(data, &resp)
				var ids []string
				for _, s := range resp.Services {
					ids = append(ids, s.ID)
				}
				sort.Strings(ids)
				r.h.add(id, typ, chaosInput{"read", ""}, call, chaosOutput{strings.Join(ids, ",")}, r.h.now())
			default:
				t.Errorf("consistent read of %s: unexpected %d %s", typ, status, data)
			}
		default:
			lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			_, err := lookups.Lookup(lctx, typ)
			cancel()
			r.lookups.Add(1)
			if err != nil && !errors.Is(err, client.ErrUnknownService) && ctx.Err() == nil {
				r.lookErr.Add(1)
				t.Logf("lookup of %s failed: %v", typ, err)
			}
		}
	}
}

// nemesis injects faults until ctx ends, then brings every node back.
func (r *chaosRun) nemesis(ctx context.Context, rng *rand.Rand) {
	c := r.c
	pause := func(lo, hi time.Duration) {
		d := lo + time.Duration(rng.Int64N(int64(hi-lo)))
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	pick := func() int {
		if rng.IntN(2) == 0 {
			if l, ok := r.currentLeader(); ok {
				return l
			}
		}
		return rng.IntN(len(c.nodes))
	}
	for ctx.Err() == nil {
		switch p := rng.IntN(100); {
		case p < 35:
			v := pick()
			r.t.Logf("nemesis: SIGKILL %s", c.nodes[v].id)
			c.kill(v)
			pause(300*time.Millisecond, 2*time.Second)
			c.restart(v)
		case p < 50:
			v := pick()
			other := (v + 1) % len(c.nodes)
			r.t.Logf("nemesis: SIGKILL %s, wipe its data dir, rejoin through %s", c.nodes[v].id, c.nodes[other].id)
			c.kill(v)
			require.NoError(r.t, os.RemoveAll(c.nodes[v].dataDir))
			c.startJoin(v, c.nodes[other].url())
		case p < 75:
			v := pick()
			r.t.Logf("nemesis: SIGSTOP %s", c.nodes[v].id)
			c.pause(v)
			pause(time.Second, 3*time.Second)
			r.t.Logf("nemesis: SIGCONT %s", c.nodes[v].id)
			c.resume(v)
		case p < 90:
			a := rng.IntN(len(c.nodes))
			b := (a + 1 + rng.IntN(len(c.nodes)-1)) % len(c.nodes)
			r.t.Logf("nemesis: SIGKILL %s and %s (no quorum)", c.nodes[a].id, c.nodes[b].id)
			c.kill(a)
			c.kill(b)
			pause(500*time.Millisecond, 2*time.Second)
			c.restart(a)
			c.restart(b)
		default:
			r.t.Logf("nemesis: calm")
			pause(500*time.Millisecond, 1500*time.Millisecond)
		}
		c.waitReady()
		pause(200*time.Millisecond, time.Second)
	}
}

func (r *chaosRun) currentLeader() (int, bool) {
	for _, i := range r.c.running() {
		st, err := r.c.status(i)
		if err == nil && st.State == "leader" {
			return i, true
		}
	}
	return 0, false
}

func TestChaos(t *testing.T) {
	duration := 20 * time.Second
	if v := os.Getenv("CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "CHAOS_DURATION")
		duration = d
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, "CHAOS_SEED")
		seed = s
	}
	t.Logf("chaos seed %d, duration %s (replay: CHAOS_SEED=%d make chaos)", seed, duration, seed)
	fmt.Printf("chaos seed %d\n", seed)
	master := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	c := startCluster(t, 3, "--snapshot-threshold=256", "--trailing-logs=64", "--snapshot-interval=1s")
	r := &chaosRun{t: t, c: c, h: &history{start: time.Now()}, httpc: &http.Client{Timeout: 8 * time.Second}}
	for i := 0; i < 2; i++ {
		p, _ := liveServer(t)
		r.live = append(r.live, p)
		r.dead = append(r.dead, deadPort(t))
	}
	lookups := newClient(t, c, nil)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	for i := 0; i < chaosClients; i++ {
		rng := rand.New(rand.NewPCG(master.Uint64(), master.Uint64()))
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.client(ctx, i, rng, lookups)
		}()
	}
	nctx, nstop := context.WithTimeout(ctx, duration)
	defer nstop()
	r.nemesis(nctx, rand.New(rand.NewPCG(master.Uint64(), master.Uint64())))

	// The nemesis has stopped and every node is back.
	stop()
	wg.Wait()
	// Every node is up and caught up: they must agree within 2 s.
	healed := time.Now()
	c.waitConvergedWithin(2 * time.Second)
	t.Logf("converged %s after the nemesis stopped", time.Since(healed).Round(time.Millisecond))

	// A final consistent read of each type closes the history.
	for k := 0; k < chaosTypes; k++ {
		typ := fmt.Sprintf("t%d", k)
		call := r.h.now()
		var resp wire.ServicesResponse
		code, err := getJSON(c.nodes[0].url()+"/v1/services/"+typ+"?consistent=true", &resp)
		require.NoError(t, err)
		require.Contains(t, []int{200, 404}, code)
		var ids []string
		for _, s := range resp.Services {
			ids = append(ids, s.ID)
		}
		sort.Strings(ids)
		r.h.add(chaosClients, typ, chaosInput{"read", ""}, call, chaosOutput{strings.Join(ids, ",")}, r.h.now())
	}

	r.checkLinearizable(seed)
	r.checkNothingLost()
	r.checkLogs()
	t.Logf("%d operations, %d lookups (%d failed)", len(r.h.ops), r.lookups.Load(), r.lookErr.Load())
	if r.lookErr.Load() > 0 {
		t.Errorf("%d lookups failed while at least one binder was up", r.lookErr.Load())
	}
}

func (r *chaosRun) checkLinearizable(seed uint64) {
	t := r.t
	model := chaosModel.ToModel()
	res, info := porcupine.CheckOperationsVerbose(model, r.h.ops, 2*time.Minute)
	switch res {
	case porcupine.Ok:
		t.Logf("history of %d operations is linearizable", len(r.h.ops))
	case porcupine.Unknown:
		t.Logf("linearizability check timed out: inconclusive")
	default:
		dir, err := os.MkdirTemp("", "lieur-chaos-")
		require.NoError(t, err)
		path := filepath.Join(dir, fmt.Sprintf("history-%d.html", seed))
		if err := porcupine.VisualizePath(model, info, path); err != nil {
			t.Logf("writing the visualisation failed: %v", err)
		}
		fmt.Printf("linearizability violation: visualisation at %s\n", path)
		t.Errorf("history is not linearizable (seed %d); visualisation written to %s", seed, path)
	}
}

// checkNothingLost: an acknowledged registration that nothing could have
// removed afterwards is on every node.
func (r *chaosRun) checkNothingLost() {
	t := r.t
	lastAck := map[string]porcupine.Operation{}
	for _, op := range r.h.ops {
		in := op.Input.(chaosInput)
		if in.Op == "register" && op.Output.(chaosOutput).Kind == "ok" {
			if prev, ok := lastAck[in.ID]; !ok || op.Call > prev.Call {
				lastAck[in.ID] = op
			}
		}
	}
	mayRemove := func(id string, after int64) bool {
		for _, op := range r.h.ops {
			in := op.Input.(chaosInput)
			kind := op.Output.(chaosOutput).Kind
			if in.ID != id || op.Return < after {
				continue
			}
			if (in.Op == "deregister" && kind != "notfound") || (in.Op == "report" && kind != "alive") {
				return true
			}
		}
		return false
	}
	for i := range r.c.nodes {
		have := map[string]bool{}
		for _, id := range r.c.servicesAt(i) {
			have[id] = true
		}
		for id, reg := range lastAck {
			if !mayRemove(id, reg.Call) && !have[id] {
				t.Errorf("acknowledged registration %s (at %s) missing on %s", id, time.Duration(reg.Return), r.c.nodes[i].id)
			}
		}
	}
}

// checkLogs fails on a panic or a data race in any agent's log.
func (r *chaosRun) checkLogs() {
	for i := range r.c.nodes {
		log := r.c.logOf(i)
		for _, bad := range []string{"panic:", "DATA RACE", "fatal error:"} {
			if strings.Contains(log, bad) {
				r.t.Errorf("%s logged %q", r.c.nodes[i].id, bad)
			}
		}
	}
}

// The checker must be able to fail: hand-made histories that break the
// model are refused.
func TestChaosModelRefusesViolations(t *testing.T) {
	op := func(in chaosInput, out string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: in, Output: chaosOutput{out}, Call: call, Return: ret, Metadata: "t0"}
	}
	model := chaosModel.ToModel()
	tests := []struct {
		name string
		ops  []porcupine.Operation
		ok   bool
	}{
		{"read sees acknowledged register", []porcupine.Operation{op(chaosInput{"register", "a"}, "ok", 0, 1), op(chaosInput{"read", ""}, "a", 2, 3)}, true},
		{"read loses acknowledged register", []porcupine.Operation{op(chaosInput{"register", "a"}, "ok", 0, 1), op(chaosInput{"read", ""}, "", 2, 3)}, false},
		{"unknown register may be absent", []porcupine.Operation{op(chaosInput{"register", "a"}, "unknown", 0, math.MaxInt64), op(chaosInput{"read", ""}, "", 2, 3)}, true},
		{"unknown register may be present", []porcupine.Operation{op(chaosInput{"register", "a"}, "unknown", 0, math.MaxInt64), op(chaosInput{"read", ""}, "a", 2, 3)}, true},
		{"deregister of absent id cannot succeed", []porcupine.Operation{op(chaosInput{"deregister", "a"}, "ok", 0, 1)}, false},
		{"removed stays removed", []porcupine.Operation{op(chaosInput{"register", "a"}, "ok", 0, 1), op(chaosInput{"report", "a"}, "removed", 2, 3), op(chaosInput{"read", ""}, "a", 4, 5)}, false},
		{"alive report keeps it", []porcupine.Operation{op(chaosInput{"register", "a"}, "ok", 0, 1), op(chaosInput{"report", "a"}, "alive", 2, 3), op(chaosInput{"read", ""}, "a", 4, 5)}, true},
		{"stale read after deregister", []porcupine.Operation{op(chaosInput{"register", "a"}, "ok", 0, 1), op(chaosInput{"deregister", "a"}, "ok", 2, 3), op(chaosInput{"read", ""}, "a", 4, 5)}, false},
		{"lookup finds a registered id", []porcupine.Operation{op(chaosInput{"register", "a"}, "ok", 0, 1), op(chaosInput{"lookup", ""}, "a", 2, 3)}, true},
		{"lookup of a removed id", []porcupine.Operation{op(chaosInput{"register", "a"}, "ok", 0, 1), op(chaosInput{"deregister", "a"}, "ok", 2, 3), op(chaosInput{"lookup", ""}, "a", 4, 5)}, false},
		{"lookup misses a registered id", []porcupine.Operation{op(chaosInput{"register", "a"}, "ok", 0, 1), op(chaosInput{"lookup", ""}, "", 2, 3)}, false},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.ok, porcupine.CheckOperations(model, tc.ops), tc.name)
	}
}
