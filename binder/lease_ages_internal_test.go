package binder

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/fsm"
)

// A lease's age says what started its clock: this leader's start for the
// leases it inherited, the registration for one registered meanwhile, a
// heartbeat once one arrives. A probe that finds the instance alive gives
// it time but is no heartbeat: the age goes on growing. A node that does
// not lead has no ages to give.
func TestLeaseAgesSayWhatStartedTheClock(t *testing.T) {
	l := newLeases()
	_, ok := l.ages("", time.Unix(1000, 0))
	assert.False(t, ok, "not leading: no ages")

	start := time.Unix(1000, 0)
	l.activate(append(leased(1, "a", 10*time.Second), fsm.Instance{ID: "plain", Type: "a", Index: 9}), start)
	l.observe(fsm.Change{Kind: fsm.Added, Instance: fsm.Instance{ID: "b-0", Type: "b", Index: 7, TTLMillis: 5000}}, start.Add(time.Second))

	ages, ok := l.ages("", start.Add(3*time.Second))
	require.True(t, ok)
	assert.Equal(t, map[string]LeaseAge{
		"a-0": {Age: 3 * time.Second, Clock: LeaseClockLeadership, TTL: 10 * time.Second},
		"b-0": {Age: 2 * time.Second, Clock: LeaseClockRegistration, TTL: 5 * time.Second},
	}, ages, "an instance without a lease has no age")

	require.True(t, l.renew("a-0", 1, start.Add(4*time.Second)))
	ages, _ = l.ages("a", start.Add(4500*time.Millisecond))
	assert.Equal(t, map[string]LeaseAge{"a-0": {Age: 500 * time.Millisecond, Clock: LeaseClockHeartbeat, TTL: 10 * time.Second}}, ages,
		"one type's only")

	// b-0's deadline passes; the probe finds it alive.
	due, _ := l.due(start.Add(7*time.Second), map[string]int{"b": 1})
	require.Len(t, due, 1)
	assert.False(t, l.settle("b-0", true, start.Add(7*time.Second)))
	ages, _ = l.ages("b", start.Add(8*time.Second))
	assert.Equal(t, LeaseAge{Age: 7 * time.Second, Clock: LeaseClockRegistration, TTL: 5 * time.Second}, ages["b-0"],
		"a probe is not a heartbeat")

	l.deactivate()
	_, ok = l.ages("", start.Add(9*time.Second))
	assert.False(t, ok, "deposed: no ages")
}
