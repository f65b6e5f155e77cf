package binder

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/fsm"
)

func leased(n int, typ string, ttl time.Duration) []fsm.Instance {
	var out []fsm.Instance
	for i := 0; i < n; i++ {
		out = append(out, fsm.Instance{ID: fmt.Sprintf("%s-%d", typ, i), Type: typ, Index: uint64(i + 1), TTLMillis: ttl.Milliseconds()})
	}
	return out
}

func ids(es []expiry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.id)
	}
	sort.Strings(out)
	return out
}

func TestLeaseActivationGrantsFullTTL(t *testing.T) {
	l := newLeases()
	now := time.Unix(1000, 0)
	l.activate(leased(2, "a", time.Second), now)
	due, _ := l.due(now.Add(999*time.Millisecond), map[string]int{"a": 2})
	assert.Empty(t, due, "nothing expires before a full TTL")
	due, _ = l.due(now.Add(time.Second), map[string]int{"a": 2})
	assert.Equal(t, []string{"a-0", "a-1"}, ids(due), "a lone pair expires as usual")
}

func TestLeaseRenewPostponesExpiry(t *testing.T) {
	l := newLeases()
	now := time.Unix(1000, 0)
	l.activate(leased(1, "a", time.Second), now)
	assert.True(t, l.renew("a-0", 1, now.Add(900*time.Millisecond)))
	assert.False(t, l.renew("a-0", 2, now), "a heartbeat for another registration of the id is not this lease's")
	assert.False(t, l.renew("nope", 1, now))
	due, _ := l.due(now.Add(1500*time.Millisecond), map[string]int{"a": 1})
	assert.Empty(t, due)
}

func TestMassExpiryGuardHoldsHalf(t *testing.T) {
	l := newLeases()
	now := time.Unix(1000, 0)
	l.activate(leased(4, "m", time.Second), now)
	total := map[string]int{"m": 4}
	first, guarded := l.due(now.Add(time.Second), total)
	require.Len(t, first, 2, "half expire at once")
	assert.Equal(t, map[string]int{"m": 2}, guarded)
	for _, e := range first {
		l.settle(e.id, false, now.Add(time.Second))
		l.observe(fsm.Change{Kind: fsm.Removed, Instance: fsm.Instance{ID: e.id}}, now)
	}
	none, _ := l.due(now.Add(1500*time.Millisecond), map[string]int{"m": 2})
	assert.Empty(t, none, "the held half waits one more TTL")
	second, _ := l.due(now.Add(2*time.Second), map[string]int{"m": 2})
	assert.Len(t, second, 2, "then is probed again, without a second reprieve")
}

func TestGuardIgnoresHealthyMajority(t *testing.T) {
	l := newLeases()
	now := time.Unix(1000, 0)
	l.activate(leased(4, "m", time.Second), now)
	// Three keep heartbeating; one stops.
	for i := 0; i < 3; i++ {
		l.renew(fmt.Sprintf("m-%d", i+1), uint64(i+2), now.Add(900*time.Millisecond))
	}
	due, guarded := l.due(now.Add(time.Second), map[string]int{"m": 4})
	assert.Equal(t, []string{"m-0"}, ids(due))
	assert.Empty(t, guarded)
}

func TestSettleSeesRenewalDuringProbe(t *testing.T) {
	l := newLeases()
	now := time.Unix(1000, 0)
	l.activate(leased(1, "a", time.Second), now)
	due, _ := l.due(now.Add(time.Second), map[string]int{"a": 1})
	require.Len(t, due, 1)
	again, _ := l.due(now.Add(1100*time.Millisecond), map[string]int{"a": 1})
	assert.Empty(t, again, "a lease being probed is not handed out twice")
	l.renew("a-0", 1, now.Add(1200*time.Millisecond))
	// The probe outlasts the new deadline: the renewal still counts.
	assert.True(t, l.settle("a-0", false, now.Add(2500*time.Millisecond)))

	l2 := newLeases()
	l2.activate(leased(1, "a", time.Second), now)
	l2.due(now.Add(time.Second), map[string]int{"a": 1})
	assert.False(t, l2.settle("a-0", false, now.Add(1500*time.Millisecond)), "no heartbeat: the expiry goes on")
}

// Leases registered a few milliseconds apart fall due on different ticks;
// the guard still holds back half of the whole cohort, not of each tick.
func TestMassExpiryGuardOverStaggeredDeadlines(t *testing.T) {
	l := newLeases()
	now := time.Unix(1000, 0)
	l.activate(leased(4, "m", time.Second), now)
	for i := 0; i < 4; i++ {
		l.renew(fmt.Sprintf("m-%d", i), uint64(i+1), now.Add(time.Duration(i)*20*time.Millisecond))
	}
	total := map[string]int{"m": 4}
	var expired []string
	for tick := now.Add(time.Second); tick.Before(now.Add(1500 * time.Millisecond)); tick = tick.Add(10 * time.Millisecond) {
		due, _ := l.due(tick, total)
		expired = append(expired, ids(due)...)
	}
	assert.Equal(t, []string{"m-0", "m-1"}, expired, "the earlier half expires; the later half waits")
	_, guarded := l.due(now.Add(1500*time.Millisecond), total)
	assert.Equal(t, map[string]int{"m": 2}, guarded)
}

// A registration applied between a new leader's start of its leases and
// its reading of the table keeps its lease: observed, not lost.
func TestLeasesStartThenMergeLosesNothing(t *testing.T) {
	l := newLeases()
	now := time.Now()
	l.start()
	// Applied after start, before the table is read: observed.
	late := fsm.Instance{ID: "late", Type: "t", Index: 9, TTLMillis: 5000}
	l.observe(fsm.Change{Kind: fsm.Added, Instance: late}, now)
	// Removed after start: the table read later may still hold it.
	gone := fsm.Instance{ID: "gone", Type: "t", Index: 3, TTLMillis: 5000}
	l.observe(fsm.Change{Kind: fsm.Removed, Instance: gone}, now)
	// The table as read, a moment older than what observe saw.
	l.merge([]fsm.Instance{{ID: "old", Type: "t", Index: 2, TTLMillis: 5000}, gone}, now)
	l.mu.Lock()
	defer l.mu.Unlock()
	assert.Contains(t, l.byID, "late")
	assert.Contains(t, l.byID, "old")
	assert.NotContains(t, l.byID, "gone", "merge brought back a removed instance")
	assert.Nil(t, l.touched, "the window is closed")
}
