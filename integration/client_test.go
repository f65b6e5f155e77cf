package integration

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/client"
)

func newClient(t *testing.T, c *cluster, onRequest func(string)) *client.Client {
	t.Helper()
	cl, err := client.New(client.Config{Binders: c.binders(), OnRequest: onRequest})
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	return cl
}

// Row 1: a binder is picked at random from the list: over many calls the
// client's choices cover every binder, and none takes nearly all.
func TestRow1BinderPickedAtRandom(t *testing.T) {
	c := startCluster(t, 3)
	c.register(0, "echo", 12347)
	c.waitConverged()
	var mu sync.Mutex
	first := map[string]int{}
	var attempts []string
	cl := newClient(t, c, func(b string) {
		mu.Lock()
		attempts = append(attempts, b)
		mu.Unlock()
	})
	const calls = 90
	for i := 0; i < calls; i++ {
		mu.Lock()
		attempts = attempts[:0]
		mu.Unlock()
		_, err := cl.Lookup(ctxTimeout(t, 10*time.Second), "echo")
		require.NoError(t, err)
		mu.Lock()
		require.Len(t, attempts, 1, "every binder is up: one attempt per call")
		first[attempts[0]]++
		mu.Unlock()
	}
	require.Len(t, first, 3, "every binder was chosen: %v", first)
	for b, n := range first {
		// With a uniform choice each binder gets 30 of 90; 60 or more for
		// one binder has a probability below 1e-9.
		assert.Less(t, n, 60, "binder %s chosen %d times of %d: not random", b, n, calls)
	}
}

// Row 4: the client waits a delay when it asks for an unknown service:
// the wait returns as soon as the service appears, else ErrUnknownService
// once the delay has passed.
func TestRow4WaitForUnknownService(t *testing.T) {
	c := startCluster(t, 3)
	cl := newClient(t, c, nil)

	_, err := cl.Resolve(ctxTimeout(t, 10*time.Second), "late")
	require.ErrorIs(t, err, client.ErrUnknownService)

	start := time.Now()
	_, err = cl.ResolveWait(ctxTimeout(t, 20*time.Second), "never", time.Second)
	require.ErrorIs(t, err, client.ErrUnknownService)
	assert.GreaterOrEqual(t, time.Since(start), time.Second, "the client waited the whole delay before giving up")

	// A long delay and a shorter deadline: only an early return can
	// succeed before the deadline.
	found := make(chan error, 1)
	go func() {
		inst, err := cl.ResolveWait(ctxTimeout(t, 30*time.Second), "late", 10*time.Minute)
		if err == nil && inst.Type != "late" {
			err = fmt.Errorf("resolved %+v", inst)
		}
		found <- err
	}()
	select {
	case err := <-found:
		t.Fatalf("ResolveWait returned before the service existed: %v", err)
	default:
	}
	c.register(1, "late", 12350)
	require.NoError(t, <-found)
	// Resolved once, now cached.
	inst, err := cl.Resolve(ctxTimeout(t, 10*time.Second), "late")
	require.NoError(t, err)
	assert.Equal(t, 12350, inst.Port)
}

// Plus: SIGKILL the leader while clients register and look up. Lookups
// never fail (clients fail over to live binders), writes resume under the
// new leader, and no acknowledged registration is lost.
func TestLeaderKillDuringTraffic(t *testing.T) {
	c := startCluster(t, 3)
	c.register(0, "stable", 14000)
	c.waitConverged()
	cl := newClient(t, c, nil)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var (
		mu          sync.Mutex
		acked       []string
		ackedAfter  atomic.Int64
		killed      atomic.Bool
		lookupFails atomic.Int64
		lookups     atomic.Int64
		wg          sync.WaitGroup
	)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := cl.Register(rctx, client.Registration{ID: id, Type: "load", Address: "127.0.0.1", Port: 20000 + i%1000})
				cancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
					if killed.Load() {
						ackedAfter.Add(1)
					}
				}
			}
		}()
	}
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := cl.Lookup(lctx, "stable")
				cancel()
				if err != nil && ctx.Err() == nil {
					lookupFails.Add(1)
					t.Logf("lookup failed: %v", err)
				}
				lookups.Add(1)
			}
		}()
	}
	waitFor(t, 20*time.Second, "traffic before the kill", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 20 && lookups.Load() >= 50, fmt.Sprintf("%d acked, %d lookups", len(acked), lookups.Load())
	})
	leader := c.leader()
	c.kill(leader)
	killed.Store(true)
	waitFor(t, 30*time.Second, "writes to resume under a new leader", func() (bool, string) {
		return ackedAfter.Load() >= 20, fmt.Sprintf("%d acked since the kill", ackedAfter.Load())
	})
	stop()
	wg.Wait()
	assert.Zero(t, lookupFails.Load(), "lookups failed while two binders were up (of %d)", lookups.Load())

	c.restart(leader)
	c.waitReady()
	c.waitConverged()
	mu.Lock()
	defer mu.Unlock()
	for i := range c.nodes {
		have := map[string]bool{}
		for _, id := range c.servicesAt(i) {
			have[id] = true
		}
		for _, id := range acked {
			if !have[id] {
				t.Errorf("acknowledged registration %s missing on %s", id, c.nodes[i].id)
			}
		}
	}
	t.Logf("%d registrations acknowledged (%d after the kill), %d lookups", len(acked), ackedAfter.Load(), lookups.Load())
}

// A client reads its own writes and reports from any binder: reads carry
// the highest index the client was answered, and a binder that has not
// applied it yet defers to another.
func TestClientReadsItsOwnWritesFromAnyBinder(t *testing.T) {
	c := startCluster(t, 3)
	cl := newClient(t, c, nil)
	live, _ := liveServer(t)
	_, err := cl.Register(ctxTimeout(t, 10*time.Second), client.Registration{Type: "rw", Address: "127.0.0.1", Port: live})
	require.NoError(t, err)
	for i := 0; i < 30; i++ {
		ctx := ctxTimeout(t, 10*time.Second)
		reg, err := cl.Register(ctx, client.Registration{Type: "rw", Address: "127.0.0.1", Port: deadPort(t)})
		require.NoError(t, err)
		list, _, err := cl.ServicesOf(ctx, "rw")
		require.NoError(t, err)
		ids := map[string]bool{}
		for _, inst := range list {
			ids[inst.ID] = true
		}
		require.True(t, ids[reg.ID()], "iteration %d: own registration %s not read back", i, reg.ID())

		verdict, err := cl.ReportDown(ctx, client.Instance{ID: reg.ID(), Type: "rw"})
		require.NoError(t, err)
		require.Equal(t, "removed", verdict)
		// Round-robin over what is left must never hand out the removed one.
		for k := 0; k < 3; k++ {
			inst, err := cl.Lookup(ctx, "rw")
			require.NoError(t, err)
			require.NotEqual(t, reg.ID(), inst.ID, "iteration %d: lookup returned an instance this client saw removed", i)
		}
	}
}
