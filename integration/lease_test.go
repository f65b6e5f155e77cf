package integration

import (
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/wire"
)

// instanceAt returns the instance id as node i serves it.
func (c *cluster) instanceAt(i int, typ, id string) (wire.Instance, bool) {
	var resp wire.ServicesResponse
	code, err := getJSON(c.nodes[i].url()+"/v1/services/"+typ+"?stale=true", &resp)
	if err != nil || code != 200 {
		return wire.Instance{}, false
	}
	for _, s := range resp.Services {
		if s.ID == id {
			return s, true
		}
	}
	return wire.Instance{}, false
}

func (c *cluster) registerTTL(i int, typ string, port int, ttl string) string {
	c.t.Helper()
	var resp wire.RegisterResponse
	code, err := postJSON(c.nodes[i].url()+"/v1/services", wire.RegisterRequest{Type: typ, Address: "127.0.0.1", Port: port, TTL: ttl}, &resp)
	require.NoError(c.t, err)
	require.Equal(c.t, 200, code)
	return resp.ID
}

func (c *cluster) heartbeat(i int, id string) int {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPut, c.nodes[i].url()+"/v1/services/"+id+"/heartbeat", nil)
	require.NoError(c.t, err)
	resp, err := httpc.Do(req)
	require.NoError(c.t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// A server SIGKILLed with no client around disappears from every node
// within its TTL plus 1 s.
func TestLeaseExpiresSilentServer(t *testing.T) {
	c := startCluster(t, 3)
	binders := strings.Join(c.binders(), ",")
	const ttl = 2 * time.Second
	s := startEchoServer(t, binders, "silent", "--ttl", ttl.String())
	c.waitConverged()
	s.signal(t, syscall.SIGKILL)
	killed := time.Now()
	waitFor(t, 20*time.Second, "the dead server to leave every node", func() (bool, string) {
		for i := range c.nodes {
			if _, ok := c.instanceAt(i, "silent", s.id); ok {
				return false, c.nodes[i].id + " still has it"
			}
		}
		return true, ""
	})
	gone := time.Since(killed)
	t.Logf("removed from every node %s after SIGKILL (ttl %s)", gone.Round(time.Millisecond), ttl)
	assert.LessOrEqual(t, gone, ttl+time.Second, "the issue's contract: gone within TTL + 1 s")
	waitLogged(t, c, "removed service: id="+s.id+" reason=expired")
}

// A server heartbeating through a leader SIGKILL is never removed: the new
// leader grants every lease a full TTL.
func TestLeaseSurvivesLeaderKill(t *testing.T) {
	c := startCluster(t, 3)
	binders := strings.Join(c.binders(), ",")
	s := startEchoServer(t, binders, "steady", "--ttl", "2s")
	c.waitConverged()
	old := c.leader()
	c.kill(old)
	c.waitReady()
	// Watch it for three TTLs across the failover.
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		for _, i := range c.running() {
			_, ok := c.instanceAt(i, "steady", s.id)
			require.True(t, ok, "%s lost the heartbeating server", c.nodes[i].id)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := range c.nodes {
		assert.NotContains(t, c.logOf(i), "removed service: id="+s.id)
	}
	assert.False(t, s.exited())
}

// A lease renewed while its expiry is probing the instance is kept.
func TestLeaseRenewedDuringExpiryIsKept(t *testing.T) {
	c := startCluster(t, 3)
	id := c.registerTTL(0, "slowprobe", hangingServer(t), "1s")
	leader := c.leader()
	waitFor(t, 20*time.Second, "the expiry to start probing", func() (bool, string) {
		return strings.Contains(c.logOf(leader), "lease expired, probing: id="+id), "not yet"
	})
	require.Equal(t, 200, c.heartbeat((leader+1)%3, id), "a heartbeat through a follower")
	waitFor(t, 20*time.Second, "the probe to end", func() (bool, string) {
		return strings.Contains(c.logOf(leader), "lease renewed while its expiry was probing: kept: id="+id), "not yet"
	})
	c.waitConverged()
	for i := range c.nodes {
		_, ok := c.instanceAt(i, "slowprobe", id)
		assert.True(t, ok, "%s removed a lease renewed during its expiry", c.nodes[i].id)
	}
}

// A lease that passes while its server still answers is kept, flagged
// stale-lease; a heartbeat clears the flag and counts a flap. A lone dead
// server of a type expires as usual.
func TestLeaseStaleButAliveIsKeptAndFlagged(t *testing.T) {
	c := startCluster(t, 3)
	live, _ := liveServer(t)
	id := c.registerTTL(0, "quiet", live, "1s")
	waitFor(t, 20*time.Second, "the stale-lease flag on every node", func() (bool, string) {
		for i := range c.nodes {
			inst, ok := c.instanceAt(i, "quiet", id)
			if !ok {
				t.Fatalf("%s removed an instance that answers", c.nodes[i].id)
			}
			if inst.Health != "stale-lease" {
				return false, fmt.Sprintf("%s: health %q", c.nodes[i].id, inst.Health)
			}
		}
		return true, ""
	})
	require.Equal(t, 200, c.heartbeat(1, id))
	waitFor(t, 20*time.Second, "the flag to clear", func() (bool, string) {
		for i := range c.nodes {
			inst, _ := c.instanceAt(i, "quiet", id)
			if inst.Health != "" || inst.Flaps != 1 {
				return false, fmt.Sprintf("%s: %+v", c.nodes[i].id, inst)
			}
		}
		return true, ""
	})
}

// When most instances of a type expire at once (at least 3), only half go
// at once; the rest wait one more TTL and are probed again.
func TestMassExpiryGuard(t *testing.T) {
	c := startCluster(t, 3)
	var ids []string
	for k := 0; k < 4; k++ {
		ids = append(ids, c.registerTTL(0, "mass", deadPort(t), "2s"))
	}
	leader := c.leader()
	waitFor(t, 20*time.Second, "the first half to expire", func() (bool, string) {
		left := 0
		for _, id := range ids {
			if _, ok := c.instanceAt(leader, "mass", id); ok {
				left++
			}
		}
		return left == 2, fmt.Sprintf("%d left", left)
	})
	st, err := c.status(leader)
	require.NoError(t, err)
	assert.Equal(t, 2, st.LeaseGuard["mass"], "status shows the guard holding two back")
	assert.Contains(t, c.logOf(leader), "mass-expiry guard: holding leases back one more TTL: type=mass held=2")
	waitFor(t, 20*time.Second, "the held half to expire after one more TTL", func() (bool, string) {
		for _, id := range ids {
			if _, ok := c.instanceAt(leader, "mass", id); ok {
				return false, id + " still there"
			}
		}
		return true, ""
	})
}

// The client registers again when a binder no longer knows its id.
func TestLeaseClientRegistersAgainAfter404(t *testing.T) {
	c := startCluster(t, 3)
	binders := strings.Join(c.binders(), ",")
	s := startEchoServer(t, binders, "again", "--ttl", "1500ms")
	code, err := doJSON(http.MethodDelete, c.nodes[0].url()+"/v1/services/"+s.id, nil)
	require.NoError(t, err)
	require.Equal(t, 200, code)
	waitFor(t, 20*time.Second, "the server to be registered again by its heartbeats", func() (bool, string) {
		_, ok := c.instanceAt(0, "again", s.id)
		return ok && strings.Contains(s.stderr.String(), "lease re-registered"), s.stderr.String()
	})
}
