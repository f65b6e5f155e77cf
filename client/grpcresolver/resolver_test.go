package grpcresolver

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc/resolver"

	"github.com/lieur/lieur/client"
)

func TestResolverSendsTheTypesInstances(t *testing.T) {
	tb := startBinder(t, "")
	tb.register("echo-a", "echo", 7001)
	tb.register("echo-b", "echo", 7002)
	tb.register("other-a", "other", 7003)

	cc, _ := build(t, newBuilder(t, client.Config{Binders: []string{tb.url}}), "lieur:///echo", resolver.BuildOptions{})
	s := cc.awaitIDs(t, "echo-a", "echo-b")

	assert.Equal(t, "127.0.0.1:7001", s.Addresses[0].Addr)
	assert.Equal(t, "127.0.0.1:7002", s.Addresses[1].Addr)
	for _, a := range s.Addresses {
		_, typ, _ := InstanceOf(a)
		assert.Equal(t, "echo", typ)
	}
	for _, e := range s.Endpoints {
		id, _, ok := InstanceOf(resolver.Address{Attributes: e.Attributes})
		assert.True(t, ok, "the endpoint carries its instance too")
		assert.NotEmpty(t, id)
	}
	require.NotNil(t, s.ServiceConfig)
	assert.Equal(t, RoundRobinConfig, s.ServiceConfig.Config.(parsedConfig).json)
	assert.Nil(t, s.Attributes.Value(reporterKey{}), "no reporter without WithDownReports")
	_, errs := cc.snapshot()
	assert.Empty(t, errs)
}

func TestResolverFollowsChangesWithBlockingQueries(t *testing.T) {
	tb := startBinder(t, "")
	tb.register("echo-a", "echo", 7001)
	cc, _ := build(t, newBuilder(t, client.Config{Binders: []string{tb.url}}), "lieur:///echo", resolver.BuildOptions{})
	cc.awaitIDs(t, "echo-a")

	tb.register("echo-b", "echo", 7002)
	cc.awaitIDs(t, "echo-a", "echo-b")
	tb.register("other-a", "other", 7003) // another type: nothing to send
	tb.deregister("echo-a")
	cc.awaitIDs(t, "echo-b")
	tb.deregister("echo-b")
	cc.awaitIDs(t) // the type is empty: an empty state, not an error
	tb.register("echo-c", "echo", 7004)
	cc.awaitIDs(t, "echo-c")

	states, errs := cc.snapshot()
	assert.Empty(t, errs)
	for i := 1; i < len(states); i++ {
		assert.NotEqual(t, stateIDs(t, states[i-1]), stateIDs(t, states[i]), "state %d repeats the one before: sent without a change", i)
	}
	assert.Equal(t, 1, tb.listCount(), "one list, then only blocking queries")
}

func TestResolverReportsErrorsAndKeepsTheLastGoodSet(t *testing.T) {
	tb := startBinder(t, "")
	tb.register("echo-a", "echo", 7001)
	cc, r := build(t, newBuilder(t, client.Config{Binders: []string{tb.url}}), "lieur:///echo", resolver.BuildOptions{})
	cc.awaitIDs(t, "echo-a")
	before, _ := cc.snapshot()

	tb.failing.Store(true)
	r.ResolveNow(resolver.ResolveNowOptions{}) // ends the blocking query under way
	poll(t, 10*time.Second, "two errors reported (the resolver keeps trying)", func() (bool, string) {
		_, errs := cc.snapshot()
		return len(errs) >= 2, fmt.Sprintf("%v", errs)
	})
	states, errs := cc.snapshot()
	assert.Len(t, states, len(before), "no state sent while the binders fail (never an empty one)")
	assert.Contains(t, errs[0].Error(), "failing on purpose")

	tb.failing.Store(false)
	tb.register("echo-b", "echo", 7002)
	cc.awaitIDs(t, "echo-a", "echo-b")
}

func TestResolveNowListsAgain(t *testing.T) {
	tb := startBinder(t, "")
	tb.register("echo-a", "echo", 7001)
	cc, r := build(t, newBuilder(t, client.Config{Binders: []string{tb.url}}), "lieur:///echo", resolver.BuildOptions{})
	cc.awaitIDs(t, "echo-a")
	n := tb.listCount()

	r.ResolveNow(resolver.ResolveNowOptions{})
	poll(t, 10*time.Second, "a list after ResolveNow", func() (bool, string) {
		return tb.listCount() > n, fmt.Sprintf("%d lists", tb.listCount())
	})
	// The resolver still follows the type afterwards.
	tb.register("echo-b", "echo", 7002)
	cc.awaitIDs(t, "echo-a", "echo-b")
	_, errs := cc.snapshot()
	assert.Empty(t, errs)
}

func TestTargetAuthorityNamesTheBinders(t *testing.T) {
	tb := startBinder(t, "s3cret")
	tb.register("echo-a", "echo", 7001)
	dead := strings.TrimPrefix(deadBinder(t), "http://")
	live := strings.TrimPrefix(tb.url, "http://")

	// The Builder's own binder is dead and the token is the Builder's:
	// resolving through the authority proves both that it names the
	// binders and that the Config's other settings still apply.
	b := newBuilder(t, client.Config{Binders: []string{deadBinder(t)}, Token: "s3cret"})
	cc, _ := build(t, b, "lieur://"+dead+","+live+"/echo", resolver.BuildOptions{})
	cc.awaitIDs(t, "echo-a")

	t.Run("without it the Builder's binders are asked", func(t *testing.T) {
		cc, _ := build(t, b, "lieur:///echo", resolver.BuildOptions{})
		poll(t, 10*time.Second, "an error reported", func() (bool, string) {
			_, errs := cc.snapshot()
			return len(errs) > 0, ""
		})
		states, _ := cc.snapshot()
		assert.Empty(t, states)
	})
	t.Run("the token is needed", func(t *testing.T) {
		cc, _ := build(t, newBuilder(t, client.Config{}), "lieur://"+live+"/echo", resolver.BuildOptions{})
		poll(t, 10*time.Second, "an error reported", func() (bool, string) {
			_, errs := cc.snapshot()
			return len(errs) > 0, ""
		})
		states, errs := cc.snapshot()
		assert.Empty(t, states)
		assert.Contains(t, errs[0].Error(), "401")
	})
}

func TestBuildRejectsBadTargets(t *testing.T) {
	withBinders := newBuilder(t, client.Config{Binders: []string{deadBinder(t)}})
	without := newBuilder(t, client.Config{})
	for _, tc := range []struct {
		target string
		b      *Builder
		want   string
	}{
		{"lieur:///", withBinders, "names no service type"},
		{"lieur://127.0.0.1:8001/", withBinders, "names no service type"},
		{"lieur:///Echo", withBinders, "must be a DNS label"},
		{"lieur:///echo_1", withBinders, "must be a DNS label"},
		{"lieur:///echo/more", withBinders, "contains '/'"},
		{"lieur:///echo?x=1", withBinders, "a query"},
		{"lieur://127.0.0.1:8001,,127.0.0.1:8002/echo", withBinders, `bad binder ""`},
		{"lieur://127.0.0.1:0/echo", withBinders, "bad authority"},
		{"lieur://127.0.0.1:99999/echo", withBinders, "bad authority"},
		{"lieur://:8001/echo", withBinders, "bad authority"},
		{"lieur:///echo", without, "no binders"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			r, err := tc.b.Build(parseTarget(t, tc.target), &recordingCC{}, resolver.BuildOptions{})
			if err == nil {
				r.Close()
				t.Fatalf("Build(%s) succeeded", tc.target)
			}
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), tc.target, "the error names the target")
		})
	}
	t.Run("bad service config", func(t *testing.T) {
		b := newBuilder(t, client.Config{Binders: []string{deadBinder(t)}}, WithServiceConfig("{not json"))
		_, err := b.Build(parseTarget(t, "lieur:///echo"), &recordingCC{}, resolver.BuildOptions{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "service config")
	})
	t.Run("bad config", func(t *testing.T) {
		_, err := NewBuilder(client.Config{Binders: []string{"ftp://x"}})
		assert.Error(t, err)
	})
}

func TestServiceConfigChoices(t *testing.T) {
	tb := startBinder(t, "")
	tb.register("echo-a", "echo", 7001)
	const custom = `{"loadBalancingConfig":[{"pick_first":{}}]}`
	for _, tc := range []struct {
		name     string
		opts     []Option
		bo       resolver.BuildOptions
		want     string // "" for no service config
		reporter bool
	}{
		{"default", nil, resolver.BuildOptions{}, RoundRobinConfig, false},
		{"down reports", []Option{WithDownReports()}, resolver.BuildOptions{}, DownReportsConfig, true},
		{"custom", []Option{WithServiceConfig(custom)}, resolver.BuildOptions{}, custom, false},
		{"custom with down reports", []Option{WithDownReports(), WithServiceConfig(custom)}, resolver.BuildOptions{}, custom, true},
		{"none", []Option{WithoutServiceConfig()}, resolver.BuildOptions{}, "", false},
		{"disabled by the dial", []Option{WithDownReports()}, resolver.BuildOptions{DisableServiceConfig: true}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, _ := build(t, newBuilder(t, client.Config{Binders: []string{tb.url}}, tc.opts...), "lieur:///echo", tc.bo)
			s := cc.awaitIDs(t, "echo-a")
			if tc.want == "" {
				assert.Nil(t, s.ServiceConfig)
			} else {
				require.NotNil(t, s.ServiceConfig)
				assert.Equal(t, tc.want, s.ServiceConfig.Config.(parsedConfig).json)
			}
			_, ok := s.Attributes.Value(reporterKey{}).(*reporter)
			assert.Equal(t, tc.reporter, ok, "a reporter rides with the state")
		})
	}
}

func TestUsableIsWhatLookupsChooseFrom(t *testing.T) {
	in := func(id, status string) client.Instance { return client.Instance{ID: id, Status: status} }
	ids := func(l []client.Instance) []string {
		out := []string{}
		for _, i := range l {
			out = append(out, i.ID)
		}
		return out
	}
	assert.Equal(t, []string{"a", "d"}, ids(usable([]client.Instance{in("a", "passing"), in("b", "warning"), in("c", "critical"), in("d", "")})))
	assert.Equal(t, []string{"b"}, ids(usable([]client.Instance{in("b", "warning"), in("c", "critical")})))
	assert.Equal(t, []string{}, ids(usable([]client.Instance{in("c", "critical")})))
	assert.Equal(t, []string{}, ids(usable(nil)))
}

func TestCloseStopsTheResolver(t *testing.T) {
	tb := startBinder(t, "")
	tb.register("echo-a", "echo", 7001)
	ignore := goleak.IgnoreCurrent()
	cc := &recordingCC{}
	r, err := newBuilder(t, client.Config{Binders: []string{tb.url}}, WithDownReports()).Build(parseTarget(t, "lieur:///echo"), cc, resolver.BuildOptions{})
	require.NoError(t, err)
	cc.awaitIDs(t, "echo-a")

	r.Close() // while a blocking query waits
	r.Close()
	before, _ := cc.snapshot()
	tb.register("echo-b", "echo", 7002)
	require.NoError(t, goleak.Find(ignore), "Close left goroutines behind")
	states, _ := cc.snapshot()
	assert.Len(t, states, len(before), "nothing sent after Close")
}
