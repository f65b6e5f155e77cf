package integration

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Raw DNS queries, each to one random binder that is up and caught up and
// never retried elsewhere, through leader SIGKILLs: every one is answered
// with the type's addresses. DNS answers from the binder's memory, like
// lookups, and keeps answering through elections.
func TestDNSAnswersThroughLeaderKills(t *testing.T) {
	c := newCluster(t, 3)
	dnsPorts := freePorts(t, 3)
	dnsAddrs := make([]string, 3)
	for i := range c.nodes {
		dnsAddrs[i] = fmt.Sprintf("127.0.0.1:%d", dnsPorts[i])
		c.start(i, "--peers", c.peers(), "--dns-addr", dnsAddrs[i])
	}
	c.waitReady()
	for p := 0; p < 3; p++ {
		c.register(0, "echo", 27001+p)
	}
	c.waitConverged()

	var mu sync.RWMutex // held for reading while a query is in flight
	serving := []bool{true, true, true}
	var statsMu sync.Mutex
	total, failed := 0, 0
	var samples []string
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &mdns.Client{Net: "udp", Timeout: 2 * time.Second}
			for {
				select {
				case <-quit:
					return
				default:
				}
				mu.RLock()
				var up []int
				for i, s := range serving {
					if s {
						up = append(up, i)
					}
				}
				i := up[rand.IntN(len(up))]
				q := new(mdns.Msg)
				q.SetQuestion("_echo._tcp.service.lieur.", mdns.TypeSRV) // three ports on one address: three SRV records
				r, _, err := cl.Exchange(q, dnsAddrs[i])
				mu.RUnlock()
				statsMu.Lock()
				total++
				if err != nil || r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 3 {
					failed++
					if len(samples) < 10 {
						samples = append(samples, fmt.Sprintf("%s: %v %v", c.nodes[i].id, err, r))
					}
				}
				statsMu.Unlock()
				time.Sleep(2 * time.Millisecond) // pacing only
			}
		}()
	}
	t.Cleanup(func() {
		select {
		case <-quit:
		default:
			close(quit)
		}
		wg.Wait()
	})

	for k := 0; k < 5; k++ {
		leader := c.leader()
		mu.Lock()
		serving[leader] = false
		mu.Unlock()
		c.kill(leader)
		waitNewLeader(t, c, leader)
		c.restart(leader)
		waitCaughtUp(t, c, leader)
		mu.Lock()
		serving[leader] = true
		mu.Unlock()
	}
	close(quit)
	wg.Wait()
	t.Logf("%d DNS queries, %d failed", total, failed)
	assert.Zero(t, failed, "DNS queries to serving binders failed: %v", samples)
	require.Greater(t, total, 200, "too few queries for the test to mean anything")
}
