package consul_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/consul/api/watch"
	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/consul"
	"github.com/lieur/lieur/transport/httpapi"
)

// A TTL check starts critical, as in Consul, and pass/warn/fail/update
// move it; ?passing (Health().Service(..., true, ...)) follows it.
func TestTTLCheckLifecycleWithTheGoClient(t *testing.T) {
	b := newBinder(t, nil)
	c := b.client(t, "")
	require.NoError(t, c.Agent().ServiceRegister(ttlService("web-1", "web", "10.0.0.5", 8080, "v1")))

	entries, meta, err := c.Health().Service("web", "", false, nil)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	e := entries[0]
	assert.Equal(t, "web-1", e.Service.ID)
	assert.Equal(t, "web", e.Service.Service)
	assert.Equal(t, []string{"v1"}, e.Service.Tags)
	assert.Equal(t, map[string]string{"version": "1.2"}, e.Service.Meta)
	assert.Equal(t, api.AgentWeights{Passing: 1, Warning: 1}, e.Service.Weights)
	assert.Equal(t, "10.0.0.5", e.Node.Node)
	assert.Equal(t, "10.0.0.5", e.Node.Address)
	assert.Equal(t, "dc1", e.Node.Datacenter)
	require.Len(t, e.Checks, 1)
	assert.Equal(t, "service:web-1", e.Checks[0].CheckID)
	assert.Equal(t, "Service 'web' check", e.Checks[0].Name)
	assert.Equal(t, "ttl", e.Checks[0].Type)
	assert.Equal(t, api.HealthCritical, e.Checks[0].Status, "a check starts critical")
	assert.Equal(t, api.HealthCritical, e.Checks.AggregatedStatus())
	assert.Positive(t, meta.LastIndex)
	assert.True(t, meta.KnownLeader)

	healthy := func() []*api.ServiceEntry {
		t.Helper()
		entries, _, err := c.Health().Service("web", "", true, nil)
		require.NoError(t, err)
		return entries
	}
	statusOf := func() (string, string) {
		t.Helper()
		entries, _, err := c.Health().Service("web", "", false, nil)
		require.NoError(t, err)
		require.Len(t, entries, 1)
		return entries[0].Checks[0].Status, entries[0].Checks[0].Output
	}
	assert.Empty(t, healthy(), "a critical instance is not passing")

	steps := []struct {
		name           string
		do             func() error
		status, output string
		passing        bool
	}{
		{"PassTTL", func() error { return c.Agent().PassTTL("service:web-1", "all good") }, api.HealthPassing, "all good", true},
		{"WarnTTL", func() error { return c.Agent().WarnTTL("service:web-1", "slow") }, api.HealthWarning, "slow", false},
		{"FailTTL", func() error { return c.Agent().FailTTL("service:web-1", "down") }, api.HealthCritical, "down", false},
		{"UpdateTTL", func() error { return c.Agent().UpdateTTL("service:web-1", "back", api.HealthPassing) }, api.HealthPassing, "back", true},
	}
	for _, step := range steps {
		require.NoError(t, step.do(), step.name)
		status, output := statusOf()
		assert.Equal(t, step.status, status, step.name)
		assert.Equal(t, step.output, output, step.name)
		assert.Equal(t, step.passing, len(healthy()) == 1, "%s: ?passing", step.name)
	}

	checks, err := c.Agent().Checks()
	require.NoError(t, err)
	require.Contains(t, checks, "service:web-1")
	assert.Equal(t, api.HealthPassing, checks["service:web-1"].Status)
	assert.Equal(t, "web", checks["service:web-1"].ServiceName)

	statusErr(t, c.Agent().PassTTL("service:nope", ""), 404, `Unknown check ID "service:nope"`)
	statusErr(t, c.Agent().UpdateTTL("web-1", "", "passing"), 404, "not the check name")
}

// A blocking query returns when what it covers changes, and not before:
// it waits its whole wait on no change, and on a change to another
// service.
func TestBlockingHealthQueryReturnsOnChangeOnly(t *testing.T) {
	b := newBinder(t, nil)
	c := b.client(t, "")
	require.NoError(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-1", Name: "web", Address: "10.0.0.5", Port: 80}))
	_, meta, err := c.Health().Service("web", "", true, nil)
	require.NoError(t, err)
	idx := meta.LastIndex

	block := func(wait time.Duration) ([]*api.ServiceEntry, uint64, time.Duration) {
		start := time.Now()
		entries, meta, err := c.Health().Service("web", "", true, &api.QueryOptions{WaitIndex: idx, WaitTime: wait})
		require.NoError(t, err)
		return entries, meta.LastIndex, time.Since(start)
	}

	// No change: the whole wait (plus at most 1/16 of jitter).
	entries, got, took := block(time.Second)
	assert.Len(t, entries, 1)
	assert.Equal(t, idx, got)
	assert.GreaterOrEqual(t, took, time.Second)
	assert.Less(t, took, 3*time.Second)

	// A change to another service does not wake it.
	type result struct {
		entries []*api.ServiceEntry
		index   uint64
		took    time.Duration
	}
	other := make(chan result, 1)
	go func() {
		e, i, d := block(1500 * time.Millisecond)
		other <- result{e, i, d}
	}()
	require.NoError(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "db-1", Name: "db", Address: "10.0.0.9", Port: 5432}))
	r := <-other
	assert.Equal(t, idx, r.index)
	assert.GreaterOrEqual(t, r.took, 1500*time.Millisecond)

	// A change to it wakes it long before its wait ends.
	changed := make(chan result, 1)
	go func() {
		e, i, d := block(time.Minute)
		changed <- result{e, i, d}
	}()
	require.NoError(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-2", Name: "web", Address: "10.0.0.6", Port: 80}))
	select {
	case r := <-changed:
		assert.Len(t, r.entries, 2)
		assert.Greater(t, r.index, idx)
		assert.Less(t, r.took, 30*time.Second)
	case <-time.After(30 * time.Second):
		t.Fatal("the blocking query did not return on the change")
	}
}

// A check's status change wakes a blocking query on ?passing too: TTL
// updates go through the log.
func TestBlockingQueryWakesOnCheckStatus(t *testing.T) {
	b := newBinder(t, nil)
	c := b.client(t, "")
	require.NoError(t, c.Agent().ServiceRegister(ttlService("web-1", "web", "10.0.0.5", 80)))
	entries, meta, err := c.Health().Service("web", "", true, nil)
	require.NoError(t, err)
	require.Empty(t, entries)

	done := make(chan []*api.ServiceEntry, 1)
	go func() {
		entries, _, err := c.Health().Service("web", "", true, &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		assert.NoError(t, err)
		done <- entries
	}()
	require.NoError(t, c.Agent().PassTTL("service:web-1", ""))
	select {
	case entries := <-done:
		assert.Len(t, entries, 1)
	case <-time.After(30 * time.Second):
		t.Fatal("the status change did not wake the query")
	}
}

func TestCatalogWithTheGoClient(t *testing.T) {
	b := newBinder(t, nil)
	c := b.client(t, "")
	for _, reg := range []*api.AgentServiceRegistration{
		{ID: "web-1", Name: "web", Address: "10.0.0.5", Port: 8080, Tags: []string{"v1", "primary"}, Weights: &api.AgentWeights{Passing: 10, Warning: 2}},
		{ID: "web-2", Name: "web", Address: "10.0.0.6", Port: 8080, Tags: []string{"v2"}},
		{ID: "db-1", Name: "db", Address: "10.0.0.5", Port: 5432},
	} {
		require.NoError(t, c.Agent().ServiceRegister(reg))
	}

	services, meta, err := c.Catalog().Services(nil)
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"web": {"primary", "v1", "v2"}, "db": {}}, services)
	assert.Positive(t, meta.LastIndex)

	web, _, err := c.Catalog().Service("web", "v1", nil)
	require.NoError(t, err)
	require.Len(t, web, 1)
	s := web[0]
	assert.Equal(t, "web-1", s.ServiceID)
	assert.Equal(t, "web", s.ServiceName)
	assert.Equal(t, "10.0.0.5", s.ServiceAddress)
	assert.Equal(t, 8080, s.ServicePort)
	assert.Equal(t, []string{"v1", "primary"}, s.ServiceTags)
	assert.Equal(t, map[string]string{}, s.ServiceMeta)
	assert.Equal(t, api.Weights{Passing: 10, Warning: 2}, s.ServiceWeights)
	assert.Equal(t, "10.0.0.5", s.Node)
	assert.Equal(t, "10.0.0.5", s.Address)
	assert.Equal(t, "dc1", s.Datacenter)
	assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, s.ID, "a version 5 UUID")

	all, _, err := c.Catalog().Service("web", "", nil)
	require.NoError(t, err)
	assert.Len(t, all, 2)
	both, _, err := c.Catalog().ServiceMultipleTags("web", []string{"V1", "primary"}, nil)
	require.NoError(t, err)
	assert.Len(t, both, 1, "every tag must match, without case")
	none, _, err := c.Health().ServiceMultipleTags("web", []string{"v1", "v2"}, false, nil)
	require.NoError(t, err)
	assert.Empty(t, none)

	nodes, _, err := c.Catalog().Nodes(nil)
	require.NoError(t, err)
	require.Len(t, nodes, 2, "one node per address")
	assert.Equal(t, "10.0.0.5", nodes[0].Node)
	assert.Equal(t, "10.0.0.6", nodes[1].Node)
	assert.Equal(t, s.ID, nodes[0].ID, "a node's id is the same in every view")
	assert.Equal(t, "dc1", nodes[0].Datacenter)
	assert.Equal(t, "10.0.0.5", nodes[0].TaggedAddresses["lan"])

	dcs, err := c.Catalog().Datacenters()
	require.NoError(t, err)
	assert.Equal(t, []string{"dc1"}, dcs)
}

func TestAgentEndpointsWithTheGoClient(t *testing.T) {
	b := newBinder(t, nil)
	c := b.client(t, "")
	require.NoError(t, c.Agent().ServiceRegister(ttlService("web-1", "web", "10.0.0.5", 8080, "v1")))

	services, err := c.Agent().Services()
	require.NoError(t, err)
	require.Contains(t, services, "web-1")
	assert.Equal(t, "web", services["web-1"].Service)
	assert.Equal(t, "dc1", services["web-1"].Datacenter)
	assert.Equal(t, 8080, services["web-1"].Port)

	svc, meta, err := c.Agent().Service("web-1", nil)
	require.NoError(t, err)
	assert.Equal(t, "web", svc.Service)
	require.NotEmpty(t, svc.ContentHash)
	assert.Equal(t, svc.ContentHash, meta.LastContentHash)

	// Hash-based blocking: returns once the service changes.
	changed := make(chan *api.AgentService, 1)
	go func() {
		svc, _, err := c.Agent().Service("web-1", &api.QueryOptions{WaitHash: svc.ContentHash, WaitTime: time.Minute})
		assert.NoError(t, err)
		changed <- svc
	}()
	require.NoError(t, c.Agent().ServiceRegister(ttlService("web-1", "web", "10.0.0.5", 8080, "v2")))
	select {
	case got := <-changed:
		assert.Equal(t, []string{"v2"}, got.Tags)
		assert.NotEqual(t, svc.ContentHash, got.ContentHash)
	case <-time.After(30 * time.Second):
		t.Fatal("the hash-blocking query did not return on the change")
	}

	_, _, err = c.Agent().Service("nope", nil)
	statusErr(t, err, 404, "unknown service ID: nope")

	self, err := c.Agent().Self()
	require.NoError(t, err)
	assert.Equal(t, "dc1", self["Config"]["Datacenter"])
	assert.Equal(t, "n1", self["Config"]["NodeName"])
	for k, v := range self {
		assert.NotNil(t, v, "agent/self %s is an object", k)
	}
	name, err := c.Agent().NodeName()
	require.NoError(t, err)
	assert.Equal(t, "n1", name)
}

func TestStatusLeaderAndPeers(t *testing.T) {
	b := newBinder(t, nil)
	c := b.client(t, "")
	leader, err := c.Status().Leader()
	require.NoError(t, err)
	assert.Equal(t, b.raftAddr, leader)
	peers, err := c.Status().Peers()
	require.NoError(t, err)
	assert.Equal(t, []string{b.raftAddr}, peers)
}

func TestDeregisterWithTheGoClient(t *testing.T) {
	b := newBinder(t, nil)
	c := b.client(t, "")
	require.NoError(t, c.Agent().ServiceRegister(ttlService("web-1", "web", "10.0.0.5", 8080)))
	require.NoError(t, c.Agent().ServiceDeregister("web-1"))
	entries, _, err := c.Health().Service("web", "", false, nil)
	require.NoError(t, err)
	assert.Empty(t, entries)
	checks, err := c.Agent().Checks()
	require.NoError(t, err)
	assert.NotContains(t, checks, "service:web-1", "the checks go with their service")
	statusErr(t, c.Agent().ServiceDeregister("web-1"), 404, `Unknown service ID "web-1"`)
}

// ?dc= names the binder's own datacenter or gets Consul's answer for a
// datacenter it has no path to.
func TestOtherDatacenter(t *testing.T) {
	b := newBinder(t, nil)
	c := b.client(t, "")
	_, _, err := c.Health().Service("web", "", false, &api.QueryOptions{Datacenter: "dc1"})
	require.NoError(t, err)
	_, _, err = c.Health().Service("web", "", false, &api.QueryOptions{Datacenter: "other"})
	statusErr(t, err, 500, "No path to datacenter")
	assert.True(t, api.IsRetryableError(err), "as from Consul: a 500")
	_, _, err = c.Catalog().Services(&api.QueryOptions{Datacenter: "other"})
	statusErr(t, err, 500, "No path to datacenter")
}

// A watch plan of the api/watch package (type "service") sees a
// registration.
func TestWatchSeesRegistration(t *testing.T) {
	b := newBinder(t, nil)
	c := b.client(t, "")
	plan, err := watch.Parse(map[string]any{"type": "service", "service": "web"})
	require.NoError(t, err)
	seen := make(chan []*api.ServiceEntry, 16)
	plan.HybridHandler = func(_ watch.BlockingParamVal, raw any) {
		seen <- raw.([]*api.ServiceEntry)
	}
	ran := make(chan error, 1)
	go func() { ran <- plan.RunWithClientAndHclog(c, hclog.NewNullLogger()) }()
	defer func() {
		plan.Stop()
		require.NoError(t, <-ran)
	}()

	first := <-seen
	assert.Empty(t, first, "the watch starts with no instance")
	require.NoError(t, c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-1", Name: "web", Address: "10.0.0.5", Port: 80}))
	select {
	case entries := <-seen:
		require.Len(t, entries, 1)
		assert.Equal(t, "web-1", entries[0].Service.ID)
	case <-time.After(30 * time.Second):
		t.Fatal("the watch did not see the registration")
	}
}

// Tokens: X-Consul-Token (the Go client's), Authorization: Bearer and
// ?token= map onto lieur's roles; a type-bound register token acts only
// on its types, refused with Consul's "Permission denied".
func TestTokensMapOntoLieurRoles(t *testing.T) {
	auth, err := httpapi.ParseTokens(strings.NewReader(`
clusterclustercluster cluster
webonlywebonlywebonly register:web
registerregisterregister register
readreadreadreadread read
`))
	require.NoError(t, err)
	auth.AuthReads = true
	b := newBinder(t, auth)
	web := b.client(t, "webonlywebonlywebonly")
	anyType := b.client(t, "registerregisterregister")
	reader := b.client(t, "readreadreadreadread")
	anonymous := b.client(t, "")
	stranger := b.client(t, "strangerstrangerstranger")

	require.NoError(t, web.Agent().ServiceRegister(ttlService("web-1", "web", "10.0.0.5", 80)))
	statusErr(t, web.Agent().ServiceRegister(ttlService("db-1", "db", "10.0.0.6", 5432)), 403,
		`Permission denied: provided token lacks permission 'service:write' on "db"`)
	require.NoError(t, anyType.Agent().ServiceRegister(ttlService("db-1", "db", "10.0.0.6", 5432)))

	// The type-bound token cannot deregister, nor report for, another
	// type's instance; the binder (the leader's table) refuses it.
	statusErr(t, web.Agent().ServiceDeregister("db-1"), 403, "Permission denied")
	statusErr(t, web.Agent().PassTTL("service:db-1", ""), 403, "Permission denied")
	require.NoError(t, web.Agent().PassTTL("service:web-1", ""))
	entries, _, err := reader.Health().Service("db", "", false, nil)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "db-1 is still registered")

	statusErr(t, reader.Agent().ServiceDeregister("web-1"), 403, `Permission denied: provided token lacks permission 'service:write'`)
	_, _, err = anonymous.Health().Service("web", "", false, nil)
	statusErr(t, err, 403, "Permission denied: anonymous token lacks permission 'service:read'")
	_, _, err = stranger.Health().Service("web", "", false, nil)
	statusErr(t, err, 403, "ACL not found")

	// The other places Consul takes a token from.
	for name, set := range map[string]func(*http.Request){
		"Authorization: Bearer": func(r *http.Request) { r.Header.Set("Authorization", "Bearer readreadreadreadread") },
		"?token=":               func(r *http.Request) { r.URL.RawQuery = "token=readreadreadreadread" },
	} {
		req, err := http.NewRequest(http.MethodGet, b.url+"/v1/health/service/web", nil)
		require.NoError(t, err)
		set(req)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, name)
	}

	require.NoError(t, anyType.Agent().ServiceDeregister("db-1"))
}

// An instance registered through lieur's own API shows one check, whose
// status is the instance's health.
func TestLieurInstancesShowASynthesizedCheck(t *testing.T) {
	b := newBinder(t, nil)
	c := b.client(t, "")
	_, _, err := b.node.Register(context.Background(), binder.Registration{ID: "echo-1", Type: "echo", Address: "10.0.0.7", Port: 7000})
	require.NoError(t, err)
	_, _, err = b.node.Register(context.Background(), binder.Registration{ID: "echo-2", Type: "echo", Address: "10.0.0.8", Port: 7000, TTL: time.Minute})
	require.NoError(t, err)

	entries, _, err := c.Health().Service("echo", "", true, nil)
	require.NoError(t, err)
	require.Len(t, entries, 2)
	for _, e := range entries {
		require.Len(t, e.Checks, 1)
		assert.Equal(t, consul.LieurCheckPrefix+e.Service.ID, e.Checks[0].CheckID)
		assert.Equal(t, api.HealthPassing, e.Checks[0].Status)
		assert.Equal(t, []string{}, e.Service.Tags)
	}
	assert.Equal(t, "", entries[0].Checks[0].Type, "no lease")
	assert.Equal(t, "ttl", entries[1].Checks[0].Type, "a lease")
	assert.Equal(t, "lieur lease", entries[1].Checks[0].Name)
}

// TCP and HTTP checks are run by the leader: they turn passing once their
// targets answer, and their definitions read back as Consul's.
func TestTCPAndHTTPChecksRunByTheLeader(t *testing.T) {
	b := newBinder(t, nil)
	c := b.client(t, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	var gotHeader = make(chan string, 64)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case gotHeader <- r.Method + " " + r.Header.Get("X-Probe"):
		default:
		}
	}))
	defer target.Close()

	reg := &api.AgentServiceRegistration{ID: "web-1", Name: "web", Address: "127.0.0.1", Port: 80,
		Checks: api.AgentServiceChecks{
			{TCP: ln.Addr().String(), Interval: "1s", Timeout: "500ms"},
			{HTTP: target.URL + "/health", Method: "PUT", Header: map[string][]string{"X-Probe": {"lieur"}}, Interval: "1s",
				DeregisterCriticalServiceAfter: "10m", Notes: "the health page"},
		}}
	require.NoError(t, c.Agent().ServiceRegister(reg))

	checks := func() map[string]*api.HealthCheck {
		t.Helper()
		list, _, err := c.Health().Checks("web", nil)
		require.NoError(t, err)
		out := map[string]*api.HealthCheck{}
		for _, ch := range list {
			out[ch.CheckID] = ch
		}
		return out
	}
	first := checks()
	require.Len(t, first, 2, "ids default to service:<id>:<n> for several checks")
	tcp, web := first["service:web-1:1"], first["service:web-1:2"]
	require.NotNil(t, tcp)
	require.NotNil(t, web)
	assert.Equal(t, "tcp", tcp.Type)
	assert.Equal(t, ln.Addr().String(), tcp.Definition.TCP)
	assert.Equal(t, time.Second, tcp.Definition.IntervalDuration)
	assert.Equal(t, 500*time.Millisecond, tcp.Definition.TimeoutDuration)
	assert.Equal(t, "http", web.Type)
	assert.Equal(t, target.URL+"/health", web.Definition.HTTP)
	assert.Equal(t, "PUT", web.Definition.Method)
	assert.Equal(t, 10*time.Minute, web.Definition.DeregisterCriticalServiceAfterDuration)
	assert.Equal(t, "the health page", web.Notes)

	eventually(t, "both checks to pass", func() bool {
		cs := checks()
		return cs["service:web-1:1"].Status == api.HealthPassing && cs["service:web-1:2"].Status == api.HealthPassing
	})
	assert.Equal(t, "PUT lieur", <-gotHeader, "the probe uses the check's method and header")

	// Only TTL checks take reports; Consul answers the others so.
	statusErr(t, c.Agent().PassTTL("service:web-1:1", ""), 500, `CheckID "service:web-1:1" does not have associated TTL`)
}

// Registering a service again keeps its checks' state, as Consul does: a
// service that re-registers does not turn critical for a TTL.
func TestReRegistrationKeepsCheckStatus(t *testing.T) {
	b := newBinder(t, nil)
	c := b.client(t, "")
	require.NoError(t, c.Agent().ServiceRegister(ttlService("web-1", "web", "10.0.0.5", 80)))
	require.NoError(t, c.Agent().PassTTL("service:web-1", "ok"))
	require.NoError(t, c.Agent().ServiceRegisterOpts(ttlService("web-1", "web", "10.0.0.5", 80, "v2"), api.ServiceRegisterOpts{ReplaceExistingChecks: true}))
	entries, _, err := c.Health().Service("web", "", true, nil)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, []string{"v2"}, entries[0].Service.Tags)
	assert.Equal(t, "ok", entries[0].Checks[0].Output)
}
