package integration

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/wire"
)

// A stalled leader (SIGSTOP) is replaced; when it resumes it steps down,
// catches up, and never serves a stale consistent read.
func TestStalledLeaderIsReplacedAndServesNoStaleConsistentRead(t *testing.T) {
	c := startCluster(t, 3)
	c.register(0, "before", 15000)
	c.waitConverged()
	old := c.leader()
	// Writes in flight when the leader freezes leave answers to its
	// appends waiting for it.
	stopWrites := make(chan struct{})
	writesDone := make(chan struct{})
	go func() {
		defer close(writesDone)
		for k := 0; ; k++ {
			select {
			case <-stopWrites:
				return
			default:
			}
			_, _ = postJSON(c.nodes[old].url()+"/v1/services", wire.RegisterRequest{Type: "busy", Address: "127.0.0.1", Port: 16000 + k%1000}, nil)
		}
	}()
	waitFor(t, 10*time.Second, "writes flowing to the leader", func() (bool, string) {
		ids := c.servicesAt(old)
		for _, id := range ids {
			if strings.HasPrefix(id, "busy-") {
				return true, ""
			}
		}
		return false, "no busy instance yet"
	})
	c.pause(old)
	close(stopWrites)
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			c.resume(old)
		}
	})
	other := (old + 1) % 3
	waitFor(t, 20*time.Second, "a new leader among the others", func() (bool, string) {
		st, err := c.status(other)
		if err != nil {
			return false, err.Error()
		}
		return st.Leader != "" && st.Leader != c.nodes[old].id, "leader " + st.Leader
	})
	written := c.register(other, "during", 15001)

	// Ask the old leader for consistent reads the moment it resumes: it
	// still believes it leads, and answers to the appends and heartbeats
	// it sent before the stall wait in its socket buffers; none of that
	// may let it answer from its stale table.
	type result struct {
		code int
		resp wire.ServicesResponse
		err  error
	}
	const readers = 16
	got := make(chan result, readers)
	for range readers {
		go func() {
			var r result
			r.code, r.err = getJSON(c.nodes[old].url()+"/v1/services?consistent=true", &r.resp)
			got <- r
		}()
	}
	c.resume(old)
	resumed = true
	for range readers {
		r := <-got
		require.NoError(t, r.err)
		if r.code == http.StatusOK {
			var ids []string
			for _, s := range r.resp.Services {
				ids = append(ids, s.ID)
			}
			assert.Contains(t, ids, written, "a consistent read on the resumed old leader missed a write acknowledged while it was stalled")
		} else {
			assert.Equal(t, http.StatusServiceUnavailable, r.code, "a refused consistent read is a 503")
		}
	}

	waitFor(t, 20*time.Second, "the old leader steps down and catches up", func() (bool, string) {
		st, err := c.status(old)
		if err != nil {
			return false, err.Error()
		}
		return st.State == "follower" && st.Leader != "" && st.Leader != c.nodes[old].id, st.State
	})
	<-writesDone
	c.waitConverged()
	assert.Contains(t, c.servicesAt(old), written)
}

// A restarted node does not serve default reads until it has caught up
// with the leader; ?stale=true reads its table anyway, and every read
// carries freshness headers.
func TestRestartedNodeCatchesUpBeforeServing(t *testing.T) {
	c := startCluster(t, 3)
	c.register(0, "echo", 15100)
	c.waitConverged()
	victim := (c.leader() + 1) % 3
	c.kill(victim)
	// With the other two also gone, the restarted node cannot hear from a
	// leader: it must refuse default reads for as long as that lasts.
	others := []int{(victim + 1) % 3, (victim + 2) % 3}
	for _, o := range others {
		c.kill(o)
	}
	c.restart(victim)
	var e wire.Error
	code, err := getJSON(c.nodes[victim].url()+"/v1/lookup/echo", &e)
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, e.Error, "catching up")
	assert.Equal(t, wire.CodeCatchingUp, e.Code)

	// The table a restarted node holds is its last snapshot's (Raft does
	// not persist the commit index, so later entries wait for a leader): a
	// stale read answers from it, found or not, rather than refusing.
	resp, err := http.Get(c.nodes[victim].url() + "/v1/services?stale=true")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "a stale read is served from the restarted node's table")
	assert.NotEmpty(t, resp.Header.Get(wire.HeaderIndex))

	for _, o := range others {
		c.restart(o)
	}
	c.waitReady()
	resp, err = http.Get(c.nodes[victim].url() + "/v1/lookup/echo")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.NotEmpty(t, resp.Header.Get(wire.HeaderLastContact), "reads say how fresh they are")
}
