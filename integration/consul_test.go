package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// consulClient is Consul's own Go client pointed at binder i, as a user
// would with CONSUL_HTTP_ADDR.
func consulClient(t *testing.T, c *cluster, i int) *consulapi.Client {
	t.Helper()
	cl, err := consulapi.NewClient(&consulapi.Config{Address: c.nodes[i].httpAddr})
	require.NoError(t, err)
	return cl
}

// awaitLogFormat waits until every node applies checks (log format 3).
func awaitLogFormat(t *testing.T, c *cluster) {
	t.Helper()
	waitFor(t, 20*time.Second, "log format 3 on every node", func() (bool, string) {
		for _, i := range c.running() {
			st, err := c.status(i)
			if err != nil || st.LogFormat < 3 {
				return false, fmt.Sprintf("%s: format %d %v", c.nodes[i].id, st.LogFormat, err)
			}
		}
		return true, ""
	})
}

// Consul's Go client, unchanged, against a real 3-node cluster: a TTL
// check registered and updated through one follower is run by the leader
// and seen from the other nodes; a blocking health query returns on a
// change; the check's TTL survives a leader SIGKILL (a new leader grants
// it a full TTL afresh); deregistration through a third node.
func TestConsulGoClientAgainstACluster(t *testing.T) {
	c := startCluster(t, 3)
	awaitLogFormat(t, c)
	leader := c.leader()
	f1, f2 := (leader+1)%3, (leader+2)%3
	a, b := consulClient(t, c, f1), consulClient(t, c, f2)

	reg := &consulapi.AgentServiceRegistration{ID: "web-1", Name: "web", Address: "127.0.0.1", Port: 32001,
		Tags: []string{"v1"}, Meta: map[string]string{"zone": "a"},
		Check: &consulapi.AgentServiceCheck{CheckID: "service:web-1", TTL: "3s"}}
	require.NoError(t, a.Agent().ServiceRegister(reg))

	entries, meta, err := b.Health().Service("web", "", true, &consulapi.QueryOptions{RequireConsistent: true})
	require.NoError(t, err)
	assert.Empty(t, entries, "a TTL check starts critical")
	require.Positive(t, meta.LastIndex)

	// A watcher on the other node blocks until the check passes.
	got := make(chan []*consulapi.ServiceEntry, 1)
	go func() {
		e, _, err := b.Health().Service("web", "v1", true, &consulapi.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		if err != nil {
			t.Errorf("blocking health query: %v", err)
		}
		got <- e
	}()
	require.NoError(t, a.Agent().UpdateTTL("service:web-1", "up", consulapi.HealthPassing))
	select {
	case e := <-got:
		require.Len(t, e, 1)
		assert.Equal(t, "web-1", e[0].Service.ID)
		assert.Equal(t, []string{"v1"}, e[0].Service.Tags)
		assert.Equal(t, "a", e[0].Service.Meta["zone"])
	case <-time.After(30 * time.Second):
		t.Fatal("the blocking health query did not return on the change")
	}

	// Passing reports keep it passing across a leader SIGKILL.
	stop := make(chan struct{})
	reporting := make(chan struct{})
	go func() {
		defer close(reporting)
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			// Through whichever node answers; errors during the election
			// are the client's to retry, as Consul's own agents do.
			for _, cl := range []*consulapi.Client{a, b} {
				if cl.Agent().PassTTL("service:web-1", "beat") == nil {
					break
				}
			}
		}
	}()
	c.kill(leader)
	waitFor(t, 20*time.Second, "a new leader", func() (bool, string) {
		st, err := c.status(f1)
		return err == nil && st.Leader != "" && st.Leader != c.nodes[leader].id, fmt.Sprint(st.Leader, err)
	})
	// Longer than the check's TTL: it stays passing throughout.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		checks, _, err := b.Health().Checks("web", &consulapi.QueryOptions{AllowStale: true})
		require.NoError(t, err)
		require.Len(t, checks, 1)
		require.Equal(t, consulapi.HealthPassing, checks[0].Status, "after the leader's SIGKILL: %s", checks[0].Output)
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	<-reporting
	c.restart(leader)
	c.waitReady()

	// Without reports it turns critical, and the passing filter drops it.
	require.NoError(t, a.Agent().FailTTL("service:web-1", "down"))
	entries, _, err = b.Health().Service("web", "", true, &consulapi.QueryOptions{RequireConsistent: true})
	require.NoError(t, err)
	assert.Empty(t, entries)

	services, _, err := consulClient(t, c, leader).Catalog().Services(nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"v1"}, services["web"])
	require.NoError(t, consulClient(t, c, leader).Agent().ServiceDeregister("web-1"))
	c.waitConverged()
	for i := range c.nodes {
		cat, _, err := consulClient(t, c, i).Catalog().Service("web", "", &consulapi.QueryOptions{AllowStale: true})
		require.NoError(t, err)
		assert.Empty(t, cat, "%s still lists web-1", c.nodes[i].id)
	}
}

// python-consul (Debian's python3-consul), unchanged, registers, passes a
// TTL check, reads health and blocks on an index.
func TestPythonConsulClient(t *testing.T) {
	py := "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import consul").CombinedOutput(); err != nil {
		t.Skipf("python3-consul is not installed here (%v: %s); .ci/run installs it", err, strings.TrimSpace(string(out)))
	}
	c := startCluster(t, 3)
	awaitLogFormat(t, c)
	n := c.nodes[(c.leader()+1)%3]
	host, port, _ := strings.Cut(n.httpAddr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/consul_client.py", host, port, "pysvc")
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "python-consul script:\n%s", out)
	assert.Contains(t, string(out), "OK")
	t.Logf("python-consul:\n%s", out)
}
