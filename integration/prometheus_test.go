package integration

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	consulsd "github.com/prometheus/prometheus/discovery/consul"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Prometheus' own Consul service discovery (the library: Debian's
// Prometheus binary is built without it), pointed at a binder: its target
// groups list exactly the registered instances, with their tags and meta
// as labels, and follow a registration and a removal.
func TestPrometheusConsulDiscovery(t *testing.T) {
	c := startCluster(t, 3)
	awaitLogFormat(t, c)
	api := consulClient(t, c, 0)
	require.NoError(t, api.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{ID: "metrics-1", Name: "metrics",
		Address: "127.0.0.1", Port: 9101, Tags: []string{"prod", "v1"}, Meta: map[string]string{"team": "core"}}))
	c.register(1, "metrics", 9102) // through lieur's own API: the same table

	cfg := consulsd.DefaultSDConfig
	cfg.Server = c.nodes[2].httpAddr
	cfg.RefreshInterval = model.Duration(time.Second)
	reg := prometheus.NewRegistry()
	metrics := cfg.NewDiscovererMetrics(reg, discovery.NewRefreshMetrics(reg))
	d, err := consulsd.NewDiscovery(&cfg, nil, metrics)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	updates := make(chan []*targetgroup.Group)
	done := make(chan struct{})
	go func() { d.Run(ctx, updates); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	// The discoverer sends each service's group as it changes; keep the
	// latest per source.
	groups := map[string]*targetgroup.Group{}
	await := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for !cond() {
			select {
			case tgs := <-updates:
				for _, g := range tgs {
					if g != nil {
						groups[g.Source] = g
					}
				}
			case <-deadline:
				t.Fatalf("timed out waiting for %s; groups: %v", what, describe(groups))
			}
		}
	}
	targets := func() []string {
		var out []string
		if g := groups["metrics"]; g != nil {
			for _, tg := range g.Targets {
				out = append(out, string(tg[model.AddressLabel]))
			}
		}
		sort.Strings(out)
		return out
	}
	await("both instances", func() bool { return strings.Join(targets(), ",") == "127.0.0.1:9101,127.0.0.1:9102" })
	g := groups["metrics"]
	assert.Equal(t, "metrics", string(g.Labels["__meta_consul_service"]))
	for _, tg := range g.Targets {
		if tg[model.AddressLabel] == "127.0.0.1:9101" {
			assert.Equal(t, ",prod,v1,", string(tg["__meta_consul_tags"]))
			assert.Equal(t, "core", string(tg["__meta_consul_service_metadata_team"]))
			assert.Equal(t, "metrics-1", string(tg["__meta_consul_service_id"]))
			assert.Equal(t, "passing", string(tg["__meta_consul_health"]))
		}
	}

	require.NoError(t, api.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{ID: "metrics-3", Name: "metrics", Address: "127.0.0.1", Port: 9103}))
	await("the new instance", func() bool { return len(targets()) == 3 })
	require.NoError(t, api.Agent().ServiceDeregister("metrics-1"))
	await("the removal", func() bool { return strings.Join(targets(), ",") == "127.0.0.1:9102,127.0.0.1:9103" })
}

func describe(groups map[string]*targetgroup.Group) string {
	var parts []string
	for src, g := range groups {
		parts = append(parts, fmt.Sprintf("%s: %v", src, g.Targets))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}
