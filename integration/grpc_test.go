package integration

// gRPC clients over lieur (client/grpcresolver) against a real 3-node
// cluster and real `lieur-echo grpc-serve` processes: round_robin over
// every instance, a SIGKILLed server reported by the client, verified and
// removed everywhere without a failed call, a new server used without a
// client restart, and a live server that is reported but kept.

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"

	"github.com/lieur/lieur/client"
	"github.com/lieur/lieur/client/grpcresolver"
	"github.com/lieur/lieur/transport/wire"
)

var grpcServingRe = regexp.MustCompile(`^lieur-echo: grpc serving type=(\S+) addr=127\.0\.0\.1:(\d+) id=(\S+)$`)

// startGRPCEcho starts `lieur-echo grpc-serve` and waits for its "grpc
// serving" line. Without a lease (--ttl 0) only a deregistration or a
// verified down-report can remove it.
func startGRPCEcho(t *testing.T, binders, typ string) *echoServer {
	t.Helper()
	return startEchoProcess(t, grpcServingRe, []string{"grpc-serve", "--type", typ, "--port", "0", "--ttl", "0", "--binders", binders})
}

// grpcRetryingConfig: round_robin with down-reports; health checks wait
// for a ready connection, and a check that a dying server failed after it
// was sent is retried (waiting for ready does not cover those).
const grpcRetryingConfig = `{
  "loadBalancingConfig": [{"lieur_down_reports": {"childPolicy": [{"round_robin": {}}]}}],
  "methodConfig": [{
    "name": [{"service": "grpc.health.v1.Health"}],
    "waitForReady": true,
    "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.05s", "maxBackoff": "1s",
      "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}
  }]
}`

// grpcSpy sits between the resolver and gRPC and keeps the latest set of
// instance ids the resolver sent.
type grpcSpy struct {
	resolver.ClientConn
	mu   sync.Mutex
	ids  []string
	sent int
}

func (s *grpcSpy) UpdateState(st resolver.State) error {
	ids := []string{}
	for _, a := range st.Addresses {
		id, _, _ := grpcresolver.InstanceOf(a)
		ids = append(ids, id)
	}
	s.mu.Lock()
	s.ids, s.sent = ids, s.sent+1
	s.mu.Unlock()
	return s.ClientConn.UpdateState(st)
}

func (s *grpcSpy) latest() ([]string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ids), s.sent
}

type spyingBuilder struct {
	*grpcresolver.Builder
	mu  sync.Mutex
	spy *grpcSpy
}

func (b *spyingBuilder) Build(target resolver.Target, cc resolver.ClientConn, bo resolver.BuildOptions) (resolver.Resolver, error) {
	spy := &grpcSpy{ClientConn: cc}
	b.mu.Lock()
	b.spy = spy
	b.mu.Unlock()
	return b.Builder.Build(target, spy, bo)
}

// ids returns the set the resolver last sent (nil before it was built).
func (b *spyingBuilder) ids() []string {
	b.mu.Lock()
	spy := b.spy
	b.mu.Unlock()
	if spy == nil {
		return nil
	}
	ids, _ := spy.latest()
	return ids
}

// downReports collects what the resolver's down-reports came to.
type downReports struct {
	mu  sync.Mutex
	all []grpcresolver.DownReport
}

func (r *downReports) add(d grpcresolver.DownReport) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, d)
}

func (r *downReports) of(id string) []grpcresolver.DownReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []grpcresolver.DownReport
	for _, d := range r.all {
		if d.ID == id {
			out = append(out, d)
		}
	}
	return out
}

// grpcCheck makes one health check and returns the instance that answered.
func grpcCheck(hc healthpb.HealthClient, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var md metadata.MD
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md)); err != nil {
		return "", err
	}
	if v := md.Get("lieur-instance"); len(v) == 1 && v[0] != "" {
		return v[0], nil
	}
	return "", fmt.Errorf("no lieur-instance header in %v", md)
}

// awaitGRPCAnswers calls until every id in want has answered once.
func awaitGRPCAnswers(t *testing.T, hc healthpb.HealthClient, want ...string) {
	t.Helper()
	seen := map[string]int{}
	waitFor(t, 30*time.Second, fmt.Sprintf("answers from each of %v", want), func() (bool, string) {
		id, err := grpcCheck(hc, 10*time.Second)
		require.NoError(t, err)
		seen[id]++
		for _, w := range want {
			if seen[w] == 0 {
				return false, fmt.Sprintf("answers so far %v", seen)
			}
		}
		return true, ""
	})
}

// callers keep calling from several goroutines and count the outcomes.
type callers struct {
	hc   healthpb.HealthClient
	stop chan struct{}
	wg   sync.WaitGroup
	ok   atomic.Int64
	mu   sync.Mutex
	errs []error
	by   map[string]int // answers per instance since mark
}

func startCallers(hc healthpb.HealthClient, n int) *callers {
	cs := &callers{hc: hc, stop: make(chan struct{}), by: map[string]int{}}
	for i := 0; i < n; i++ {
		cs.wg.Add(1)
		go func() {
			defer cs.wg.Done()
			for {
				select {
				case <-cs.stop:
					return
				default:
				}
				id, err := grpcCheck(hc, 20*time.Second)
				cs.mu.Lock()
				if err != nil {
					cs.errs = append(cs.errs, err)
				} else {
					cs.ok.Add(1)
					cs.by[id]++
				}
				cs.mu.Unlock()
			}
		}()
	}
	return cs
}

// mark starts counting answers per instance afresh.
func (cs *callers) mark() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.by = map[string]int{}
}

func (cs *callers) answers() map[string]int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	out := map[string]int{}
	for k, v := range cs.by {
		out[k] = v
	}
	return out
}

func (cs *callers) end() []error {
	close(cs.stop)
	cs.wg.Wait()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.errs
}

func TestGRPCResolver(t *testing.T) {
	c := startCluster(t, 3)
	all := strings.Join(c.binders(), ",")
	const typ = "gecho"
	servers := []*echoServer{startGRPCEcho(t, all, typ), startGRPCEcho(t, all, typ), startGRPCEcho(t, all, typ)}
	c.waitConverged()

	rep := &downReports{}
	gb, err := grpcresolver.NewBuilder(client.Config{Binders: c.binders()},
		grpcresolver.WithDownReports(), grpcresolver.WithServiceConfig(grpcRetryingConfig), grpcresolver.WithOnDownReport(rep.add))
	require.NoError(t, err)
	b := &spyingBuilder{Builder: gb}
	conn, err := grpc.NewClient("lieur:///"+typ, grpc.WithResolvers(b), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	hc := healthpb.NewHealthClient(conn)

	t.Run("SpreadsCallsOverEveryInstance", func(t *testing.T) {
		awaitGRPCAnswers(t, hc, servers[0].id, servers[1].id, servers[2].id)
		counts := map[string]int{}
		for i := 0; i < 60; i++ {
			id, err := grpcCheck(hc, 10*time.Second)
			require.NoError(t, err)
			counts[id]++
		}
		for _, s := range servers {
			assert.Positive(t, counts[s.id], "%s answered some of 60 calls: %v", s.id, counts)
		}
	})

	t.Run("SIGKILLedServerReportedRemovedAndNoCallFails", func(t *testing.T) {
		dead, live := servers[2], servers[:2]
		cs := startCallers(hc, 4)
		waitFor(t, 30*time.Second, "calls under way", func() (bool, string) {
			return cs.ok.Load() >= 20, fmt.Sprintf("%d calls", cs.ok.Load())
		})
		dead.signal(t, syscall.SIGKILL)

		waitFor(t, 30*time.Second, dead.id+" reported and removed", func() (bool, string) {
			r := rep.of(dead.id)
			return slices.ContainsFunc(r, func(d grpcresolver.DownReport) bool { return d.Verdict == wire.VerdictRemoved }),
				fmt.Sprintf("reports %+v", r)
		})
		waitLogged(t, c, "removed service: id="+dead.id+" reason=reported-down")
		c.waitConverged()
		for i := range c.nodes {
			assert.NotContains(t, c.servicesAt(i), dead.id, "node %s dropped the killed server", c.nodes[i].id)
		}
		waitFor(t, 30*time.Second, "the client's set to drop "+dead.id, func() (bool, string) {
			ids, want := b.ids(), []string{live[0].id, live[1].id}
			slices.Sort(want) // the binders list instances by id
			return slices.Equal(ids, want), fmt.Sprintf("set %v", ids)
		})

		// Calls go on, on the two live servers only.
		cs.mark()
		start := cs.ok.Load()
		waitFor(t, 30*time.Second, "more calls after the removal", func() (bool, string) {
			return cs.ok.Load() >= start+40, fmt.Sprintf("%d calls", cs.ok.Load()-start)
		})
		after := cs.answers()
		errs := cs.end()
		assert.Empty(t, errs, "no call failed across the kill (%d succeeded)", cs.ok.Load())
		assert.Zero(t, after[dead.id], "answers after the removal: %v", after)
		for _, s := range live {
			assert.Positive(t, after[s.id], "%s still answers: %v", s.id, after)
			assert.Empty(t, rep.of(s.id), "a live server was reported")
		}
	})

	outer := t
	t.Run("NewServerGetsCallsWithoutARestart", func(t *testing.T) {
		s := startGRPCEcho(outer, all, typ) // it outlives this subtest
		servers = append(servers, s)
		awaitGRPCAnswers(t, hc, s.id)
		assert.Contains(t, b.ids(), s.id)
	})

	t.Run("GRPCCallCommand", func(t *testing.T) {
		r := runBinary(t, procEnv(), echoBin, "grpc-call", "--type", typ, "--count", "20", "--binders", all)
		require.Equal(t, 0, r.code, "%v", r)
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		assert.Len(t, lines, 20)
		live := []string{servers[0].id, servers[1].id, servers[3].id}
		for _, l := range lines {
			assert.Contains(t, live, l, "each line names a live instance")
		}
		assert.Empty(t, r.stderr, "no server was unreachable")
	})

	t.Run("ReportedLiveServerStays", func(t *testing.T) {
		// A TCP server that closes every connection: gRPC cannot use it,
		// so the client reports it, but the binder's probe connects.
		port, _ := liveServer(t)
		id := c.register(0, typ, port)
		waitFor(t, 30*time.Second, id+" reported", func() (bool, string) {
			return len(rep.of(id)) > 0, fmt.Sprintf("set %v", b.ids())
		})
		r := rep.of(id)[0]
		assert.NoError(t, r.Err)
		assert.Equal(t, wire.VerdictAlive, r.Verdict, "the binder found it alive: %+v", r)
		c.waitConverged()
		for i := range c.nodes {
			assert.Contains(t, c.servicesAt(i), id, "node %s kept it", c.nodes[i].id)
		}
		assert.Contains(t, b.ids(), id, "the client's set keeps it")
		for i := 0; i < 10; i++ {
			got, err := grpcCheck(hc, 10*time.Second)
			require.NoError(t, err)
			assert.NotEqual(t, id, got)
		}
		assert.Len(t, rep.of(id), 1, "one report for its failure episode")
	})

	t.Run("SIGTERMDeregisters", func(t *testing.T) {
		s := servers[3]
		s.signal(t, syscall.SIGTERM)
		require.NoError(t, s.err, "grpc-serve exits cleanly on SIGTERM; stderr %q", s.stderr.String())
		out := s.stdout()
		assert.Equal(t, "lieur-echo: deregistered "+s.id, out[len(out)-1])
		waitLogged(t, c, "removed service: id="+s.id+" reason=deregistered")
		waitFor(t, 30*time.Second, "the client's set to drop "+s.id, func() (bool, string) {
			return !slices.Contains(b.ids(), s.id), fmt.Sprintf("set %v", b.ids())
		})
		for i := 0; i < 10; i++ {
			got, err := grpcCheck(hc, 10*time.Second)
			require.NoError(t, err)
			assert.Contains(t, []string{servers[0].id, servers[1].id}, got)
		}
	})
}
