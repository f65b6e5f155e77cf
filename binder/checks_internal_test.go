package binder

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/fsm"
)

func checkStatus(n *Node, id, checkID string) string {
	inst, ok := n.fsm.Get(id)
	if !ok {
		return "gone"
	}
	c, _ := inst.CheckByID(checkID)
	return c.Status
}

func awaitStatus(t *testing.T, n *Node, id, checkID, want string) {
	t.Helper()
	require.Eventually(t, func() bool { return checkStatus(n, id, checkID) == want }, 10*time.Second, 5*time.Millisecond,
		"check %s of %s to become %s (is %s)", checkID, id, want, checkStatus(n, id, checkID))
}

func reg(id string, checks ...fsm.Check) Registration {
	return Registration{ID: id, Type: "web", Address: "127.0.0.1", Port: 1, Tags: []string{"t"}, Checks: checks}
}

// A ttl check moves with its owner's reports, writes the log only when its
// status or output changes, and turns critical when reports stop.
func TestTTLCheck(t *testing.T) {
	n := startLone(t)
	ctx := context.Background()
	_, _, err := n.Register(ctx, reg("a", fsm.Check{ID: "service:a", Kind: fsm.CheckTTL, TTLMillis: 500, Status: fsm.StatusCritical}))
	require.NoError(t, err)
	assert.Equal(t, fsm.StatusCritical, checkStatus(n, "a", "service:a"))

	require.NoError(t, n.CheckUpdate(ctx, "service:a", fsm.StatusPassing, "ok", nil))
	assert.Equal(t, fsm.StatusPassing, checkStatus(n, "a", "service:a"))
	before := n.fsm.Applied()
	for i := 0; i < 5; i++ {
		require.NoError(t, n.CheckUpdate(ctx, "service:a", fsm.StatusPassing, "ok", nil))
	}
	assert.Equal(t, before, n.fsm.Applied(), "reports that change nothing write nothing")
	require.NoError(t, n.CheckUpdate(ctx, "service:a", fsm.StatusWarning, "slow", nil))
	assert.Equal(t, fsm.StatusWarning, checkStatus(n, "a", "service:a"))

	// No more reports: critical after the TTL.
	awaitStatus(t, n, "a", "service:a", fsm.StatusCritical)
	inst, _ := n.fsm.Get("a")
	c, _ := inst.CheckByID("service:a")
	assert.Equal(t, "TTL expired", c.Output)

	assert.ErrorIs(t, n.CheckUpdate(ctx, "nope", fsm.StatusPassing, "", nil), ErrUnknownCheck)
	assert.ErrorIs(t, n.CheckUpdate(ctx, "service:a", fsm.StatusPassing, "", []string{"db"}), ErrForbidden)
	assert.ErrorIs(t, n.CheckUpdate(ctx, "service:a", "fine", "", nil), ErrInvalid)
}

// tcp and http checks are run by the leader on their interval; their
// thresholds hold the status back; 429 is a warning.
func TestProbedChecks(t *testing.T) {
	n := startLone(t)
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	var code atomic.Int64
	code.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Probe") != "lieur" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(int(code.Load()))
	}))
	defer srv.Close()

	_, _, err = n.Register(ctx, reg("t",
		fsm.Check{ID: "tcp", Kind: fsm.CheckTCP, IntervalMillis: 100, TimeoutMillis: 500, Target: ln.Addr().String(), Status: fsm.StatusCritical},
		fsm.Check{ID: "http", Kind: fsm.CheckHTTP, IntervalMillis: 100, TimeoutMillis: 500, Target: srv.URL + "/health",
			Header: map[string][]string{"X-Probe": {"lieur"}}, Status: fsm.StatusCritical, FailuresBeforeCritical: 2}))
	require.NoError(t, err)
	awaitStatus(t, n, "t", "tcp", fsm.StatusPassing)
	awaitStatus(t, n, "t", "http", fsm.StatusPassing)

	code.Store(http.StatusTooManyRequests)
	awaitStatus(t, n, "t", "http", fsm.StatusWarning)
	code.Store(http.StatusInternalServerError)
	awaitStatus(t, n, "t", "http", fsm.StatusCritical)
	inst, _ := n.fsm.Get("t")
	c, _ := inst.CheckByID("http")
	assert.Contains(t, c.Output, "500")

	ln.Close()
	awaitStatus(t, n, "t", "tcp", fsm.StatusCritical)
	assert.Equal(t, fsm.StatusCritical, inst.Status())
	assert.Empty(t, n.fsm.HealthyOf("web"), "a critical instance is not handed out")
	_, err = n.Lookup("web")
	assert.True(t, errors.Is(err, ErrUnknownService))
}

// An instance whose check stays critical for DeregisterAfterMillis leaves
// the table, with reason critical-too-long; one that recovered in time
// stays.
func TestDeregisterCriticalAfter(t *testing.T) {
	var logs syncBuffer
	n := startLone(t, func(c *Config) {
		c.Logger = hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})
	})
	ctx := context.Background()
	_, _, err := n.Register(ctx, reg("e", fsm.Check{ID: "service:e", Kind: fsm.CheckTTL, TTLMillis: 60000, Status: fsm.StatusCritical, DeregisterAfterMillis: 500}))
	require.NoError(t, err)
	require.NoError(t, n.CheckUpdate(ctx, "service:e", fsm.StatusPassing, "", nil))
	// Registered after e recovered, with the same bound: once d is gone,
	// e has been passing for longer than the bound.
	_, _, err = n.Register(ctx, reg("d", fsm.Check{ID: "service:d", Kind: fsm.CheckTTL, TTLMillis: 60000, Status: fsm.StatusCritical, DeregisterAfterMillis: 500}))
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, ok := n.fsm.Get("d"); return !ok }, 10*time.Second, 5*time.Millisecond, "d removed after staying critical")
	assert.Contains(t, logs.String(), "removed service: id=d reason=critical-too-long")
	_, ok := n.fsm.Get("e")
	assert.True(t, ok, "e recovered in time and stays")
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The leader runs every check: a tcp or http check may only reach its own
// instance's address, or anyone who can register could make the leader
// connect anywhere it can reach.
func TestChecksOnlyReachTheirInstance(t *testing.T) {
	for name, target := range map[string]fsm.Check{
		"metadata service": {ID: "h", Kind: fsm.CheckHTTP, IntervalMillis: 1000, Target: "http://169.254.169.254/latest/meta-data/", Status: fsm.StatusCritical},
		"leader loopback":  {ID: "t", Kind: fsm.CheckTCP, IntervalMillis: 1000, Target: "127.0.0.2:22", Status: fsm.StatusCritical},
	} {
		r := Registration{ID: "a", Type: "web", Address: "127.0.0.1", Port: 1, Checks: []fsm.Check{target}}
		err := r.Normalize()
		assert.ErrorIs(t, err, ErrInvalid, name)
		assert.ErrorContains(t, err, "may only reach its own instance", name)
	}
	ok := Registration{ID: "a", Type: "web", Address: "10.0.0.5", Port: 1, Checks: []fsm.Check{
		{ID: "h", Kind: fsm.CheckHTTP, IntervalMillis: 1000, Target: "https://10.0.0.5:8443/health", Status: fsm.StatusCritical},
		{ID: "t", Kind: fsm.CheckTCP, IntervalMillis: 1000, Target: "10.0.0.5:5432", Status: fsm.StatusCritical}}}
	assert.NoError(t, ok.Normalize())
}
