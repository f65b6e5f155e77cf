package grpcresolver

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/pickfirst"
	"google.golang.org/grpc/balancer/roundrobin"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"

	"github.com/lieur/lieur/client"
	"github.com/lieur/lieur/transport/wire"
)

// retryingConfig is DownReportsConfig plus what an application that calls
// an idempotent method adds: wait for a ready connection, and retry an RPC
// that a dying server failed (those were already sent, so WaitForReady
// does not cover them).
const retryingConfig = `{
  "loadBalancingConfig": [{"lieur_down_reports": {"childPolicy": [{"round_robin": {}}]}}],
  "methodConfig": [{
    "name": [{"service": "grpc.health.v1.Health"}],
    "waitForReady": true,
    "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.05s", "maxBackoff": "1s",
      "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}
  }]
}`

// testServer is a gRPC health server that tells, in the "lieur-instance"
// response header, which instance answered.
type testServer struct {
	id   string
	port int
	srv  *grpc.Server
}

func startGRPCServer(t *testing.T, id string) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		_ = grpc.SetHeader(ctx, metadata.Pairs("lieur-instance", id))
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return &testServer{id: id, port: ln.Addr().(*net.TCPAddr).Port, srv: srv}
}

// spyBuilder builds the package's resolvers with a recordingCC in front
// of gRPC's ClientConn, so a test sees what the resolver sent.
type spyBuilder struct {
	*Builder
	mu  sync.Mutex
	ccs []*recordingCC
}

func (s *spyBuilder) Build(target resolver.Target, cc resolver.ClientConn, bo resolver.BuildOptions) (resolver.Resolver, error) {
	rec := &recordingCC{next: cc}
	s.mu.Lock()
	s.ccs = append(s.ccs, rec)
	s.mu.Unlock()
	return s.Builder.Build(target, rec, bo)
}

func (s *spyBuilder) cc(t *testing.T) *recordingCC {
	t.Helper()
	var cc *recordingCC
	poll(t, 10*time.Second, "gRPC to build the resolver", func() (bool, string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.ccs) > 0 {
			cc = s.ccs[len(s.ccs)-1]
		}
		return cc != nil, ""
	})
	return cc
}

// reports collects the outcomes of down-reports.
type reports struct {
	mu  sync.Mutex
	all []DownReport
}

func (r *reports) add(d DownReport) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, d)
}

func (r *reports) of(id string) []DownReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []DownReport
	for _, d := range r.all {
		if d.ID == id {
			out = append(out, d)
		}
	}
	return out
}

// dial connects to lieur:///echo through tb with down-reports on.
func dial(t *testing.T, tb *testBinder, rep *reports) (healthpb.HealthClient, *spyBuilder) {
	t.Helper()
	b := &spyBuilder{Builder: newBuilder(t, client.Config{Binders: []string{tb.url}},
		WithDownReports(), WithServiceConfig(retryingConfig), WithOnDownReport(rep.add))}
	conn, err := grpc.NewClient("lieur:///echo", grpc.WithResolvers(b), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn), b
}

// check makes one RPC and returns the instance that answered.
func check(t *testing.T, hc healthpb.HealthClient) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var md metadata.MD
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md)); err != nil {
		return "", err
	}
	if v := md.Get("lieur-instance"); len(v) == 1 {
		return v[0], nil
	}
	return "", fmt.Errorf("no lieur-instance header in %v", md)
}

// awaitAnswers calls until every id in want has answered.
func awaitAnswers(t *testing.T, hc healthpb.HealthClient, want ...string) {
	t.Helper()
	seen := map[string]int{}
	poll(t, 20*time.Second, fmt.Sprintf("answers from each of %v", want), func() (bool, string) {
		id, err := check(t, hc)
		require.NoError(t, err)
		seen[id]++
		for _, w := range want {
			if seen[w] == 0 {
				return false, fmt.Sprintf("%v", seen)
			}
		}
		return true, ""
	})
}

func TestGRPCSpreadsCallsAndDropsADeadInstance(t *testing.T) {
	tb := startBinder(t, "")
	servers := []*testServer{startGRPCServer(t, "echo-1"), startGRPCServer(t, "echo-2"), startGRPCServer(t, "echo-3")}
	for _, s := range servers {
		tb.register(s.id, "echo", s.port)
	}
	rep := &reports{}
	hc, spy := dial(t, tb, rep)
	awaitAnswers(t, hc, "echo-1", "echo-2", "echo-3")

	counts := map[string]int{}
	for i := 0; i < 30; i++ {
		id, err := check(t, hc)
		require.NoError(t, err)
		counts[id]++
	}
	for _, s := range servers {
		assert.Positive(t, counts[s.id], "round_robin sends %s some of 30 calls: %v", s.id, counts)
	}

	servers[2].srv.Stop() // its port now refuses connections
	poll(t, 20*time.Second, "echo-3 reported and removed", func() (bool, string) {
		r := rep.of("echo-3")
		return len(r) > 0 && r[len(r)-1].Verdict == wire.VerdictRemoved, fmt.Sprintf("reports %+v", r)
	})
	assert.NotContains(t, tb.ids("echo"), "echo-3", "the binder removed it")
	spy.cc(t).awaitIDs(t, "echo-1", "echo-2")
	for i := 0; i < 20; i++ {
		id, err := check(t, hc)
		require.NoError(t, err, "call %d after the stop", i)
		assert.NotEqual(t, "echo-3", id)
	}
	for _, id := range []string{"echo-1", "echo-2"} {
		assert.Empty(t, rep.of(id), "a live instance was reported")
	}

	s4 := startGRPCServer(t, "echo-4")
	tb.register(s4.id, "echo", s4.port)
	awaitAnswers(t, hc, "echo-4")
}

// liveTCP accepts connections and closes them: alive for a binder's
// probe, useless to gRPC.
func liveTCP(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().(*net.TCPAddr).Port
}

func TestGRPCReportedLiveInstanceStays(t *testing.T) {
	tb := startBinder(t, "")
	s1 := startGRPCServer(t, "echo-1")
	tb.register(s1.id, "echo", s1.port)
	tb.register("echo-tcp", "echo", liveTCP(t))
	rep := &reports{}
	hc, spy := dial(t, tb, rep)
	id, err := check(t, hc) // a channel connects at its first RPC
	require.NoError(t, err)
	assert.Equal(t, "echo-1", id)

	poll(t, 20*time.Second, "echo-tcp reported", func() (bool, string) {
		return len(rep.of("echo-tcp")) > 0, ""
	})
	r := rep.of("echo-tcp")[0]
	assert.Equal(t, wire.VerdictAlive, r.Verdict, "the binder's probe finds it alive: %+v", r)
	assert.NoError(t, r.Err)
	assert.Error(t, r.Cause, "the report carries the connection error")
	assert.Contains(t, tb.ids("echo"), "echo-tcp", "the binder kept it")
	states, _ := spy.cc(t).snapshot()
	require.NotEmpty(t, states)
	assert.Equal(t, []string{"echo-1", "echo-tcp"}, stateIDs(t, states[len(states)-1]), "the resolver keeps offering it")
	for i := 0; i < 10; i++ {
		id, err := check(t, hc)
		require.NoError(t, err)
		assert.Equal(t, "echo-1", id)
	}
	assert.Len(t, rep.of("echo-tcp"), 1, "one report for the failure episode")
	assert.Empty(t, rep.of("echo-1"))
}

func TestDownReportsConfigNamesTheChildPolicy(t *testing.T) {
	p := balancer.Get(BalancerName).(balancer.ConfigParser)
	for _, tc := range []struct {
		raw   string
		child string
		err   string
	}{
		{``, roundrobin.Name, ""},
		{`{}`, roundrobin.Name, ""},
		{`{"childPolicy":[{"round_robin":{}}]}`, roundrobin.Name, ""},
		{`{"childPolicy":[{"no_such_policy":{}},{"pick_first":{"shuffleAddressList":true}}]}`, pickfirst.Name, ""},
		{`{"childPolicy":[{"no_such_policy":{}}]}`, "", "no registered policy"},
		{`{"childPolicy":[{"lieur_down_reports":{}}]}`, "", "its own child"},
		{`{"childPolicy":[{"round_robin":{},"pick_first":{}}]}`, "", "names one policy"},
		{`{"childPolicy":7}`, "", "bad config"},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			cfg, err := p.ParseConfig(json.RawMessage(tc.raw))
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.child, cfg.(*lbConfig).child)
		})
	}
}

func TestServiceConfigsParseInGRPC(t *testing.T) {
	// NewClient parses a default service config and refuses a bad one.
	for _, js := range []string{RoundRobinConfig, DownReportsConfig, retryingConfig} {
		conn, err := grpc.NewClient("passthrough:///unused", grpc.WithDefaultServiceConfig(js), grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err, js)
		require.NoError(t, conn.Close())
	}
	_, err := grpc.NewClient("passthrough:///unused", grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"lieur_down_reports":{"childPolicy":[{"nope":{}}]}}]}`),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	assert.Error(t, err, "the check above can fail")
}
