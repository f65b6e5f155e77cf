package binder

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
)

func voters(ids ...string) []raft.Server {
	var out []raft.Server
	for _, id := range ids {
		out = append(out, raft.Server{ID: raft.ServerID(id), Suffrage: raft.Voter, Address: raft.ServerAddress(id + ":1")})
	}
	return out
}

func unheardOf(ids ...string) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, id := range ids {
		out[id] = time.Minute
	}
	return out
}

// A follower is unheard since its last contact, but never since before
// this leadership began. A heartbeat record lasts until the heartbeats
// resume (not expiring on its own: raftnet's patient dials keep failures
// unobserved for up to 30 s); a lease-check record while the reports go
// on. Records nothing refreshes are rechecked over HTTP, and a new
// leadership starts afresh.
func TestUnheardFollowsRaftReports(t *testing.T) {
	d := newDeadServers(350*time.Millisecond, 175*time.Millisecond)
	t0 := time.Unix(1000, 0)
	assert.Empty(t, d.unheard(1, t0), "nothing recorded")

	d.failed(1, "n2", t0.Add(-time.Hour), t0.Add(time.Second))
	d.failed(1, "n3", t0.Add(2*time.Second), t0.Add(3*time.Second))
	got := d.unheard(1, t0.Add(5*time.Second))
	assert.Equal(t, map[string]time.Duration{"n2": 5 * time.Second, "n3": 3 * time.Second}, got,
		"n2's contact predates this leadership: counted from its start")
	d.resumed("n3")
	assert.NotContains(t, d.unheard(1, t0.Add(6*time.Second)), "n3", "resumed heartbeats forget it")

	at := t0.Add(time.Minute)
	d.reported(1, "n4", at.Add(-10*time.Second), at)
	assert.Equal(t, map[string]time.Duration{"n2": time.Minute, "n4": 10 * time.Second}, d.unheard(1, at),
		"no failure for a minute: n2 is still unheard; n4 as the lease check reports it")
	d.reported(1, "n4", at.Add(-10*time.Second), at.Add(500*time.Millisecond))
	assert.Contains(t, d.unheard(1, at.Add(time.Second)), "n4", "reported again")
	assert.NotContains(t, d.unheard(1, at.Add(500*time.Millisecond+4*175*time.Millisecond+time.Millisecond)), "n4",
		"the lease check stopped reporting it: heard again")

	// Rechecks: records nothing refreshed for quiet, at most every
	// recheckEvery each; stale lease-check records are dropped.
	assert.Equal(t, []string{"n2"}, d.toRecheck(1, at), "n2: no failure since t0+1s")
	assert.Empty(t, d.toRecheck(1, at.Add(time.Millisecond)), "n2 was just checked")
	assert.Equal(t, []string{"n2"}, d.toRecheck(1, at.Add(recheckEvery)))
	assert.Equal(t, []string{"n2"}, keys(d.unheard(1, at.Add(recheckEvery))), "n4's stale record was dropped")

	late := t0.Add(time.Hour)
	assert.Empty(t, d.unheard(2, late), "a new leadership generation starts with no record")
	d.failed(2, "n2", t0, late.Add(time.Second))
	assert.Equal(t, 2*time.Second, d.unheard(2, late.Add(2*time.Second))["n2"], "counted from when this node was first seen leading in generation 2")
}

func keys(m map[string]time.Duration) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// The raft logger's lease-check reports reach the tracker, at any level;
// other messages do not.
func TestRaftLogTapReadsLeaseCheckReports(t *testing.T) {
	n := &Node{dead: newDeadServers(350*time.Millisecond, 175*time.Millisecond)}
	tap := raftLogTap{Logger: hclog.NewNullLogger(), n: n}
	n.dead.unheard(0, time.Now().Add(-time.Hour)) // leading for an hour
	tap.Debug("failed to contact", "server-id", raft.ServerID("n2"), "time", 3*time.Second)
	tap.Warn("failed to contact", "server-id", raft.ServerID("n3"), "time", 300*time.Millisecond)
	tap.Warn("failed to heartbeat to", "peer", "n4", "time", time.Second)
	tap.Warn("failed to contact", "server-id", "n5", "time", time.Second) // not a ServerID: ignored
	got := n.dead.unheard(0, time.Now())
	assert.Equal(t, []string{"n2", "n3"}, sortedKeys(got))
	assert.InDelta(t, 3*time.Second, got["n2"], float64(time.Second))
}

func sortedKeys(m map[string]time.Duration) []string {
	out := keys(m)
	sort.Strings(out)
	return out
}

func TestQuorumAndCleanupRules(t *testing.T) {
	tests := []struct {
		name      string
		servers   []raft.Server
		id        string
		unheard   map[string]time.Duration
		quorumErr string // quorumWithout
		cleanErr  string // cleanupRefusal
	}{
		{name: "three voters, one dead", servers: voters("n1", "n2", "n3"), id: "n3", unheard: unheardOf("n3"),
			cleanErr: "would leave 2 voters; the cleanup keeps at least 3"},
		{name: "four voters, one dead", servers: voters("n1", "n2", "n3", "n4"), id: "n4", unheard: unheardOf("n4")},
		{name: "four voters, two dead", servers: voters("n1", "n2", "n3", "n4"), id: "n4", unheard: unheardOf("n3", "n4")},
		{name: "five voters, three dead", servers: voters("n1", "n2", "n3", "n4", "n5"), id: "n5", unheard: unheardOf("n3", "n4", "n5"),
			quorumErr: "would leave 4 voters of which the leader hears from 2, below their quorum of 3",
			cleanErr:  "would leave 4 voters of which the leader hears from 2, below their quorum of 3"},
		{name: "a live voter while another is dead", servers: voters("n1", "n2", "n3"), id: "n2", unheard: unheardOf("n3"),
			quorumErr: "would leave 2 voters of which the leader hears from 1, below their quorum of 2",
			cleanErr:  "would leave 2 voters"},
		{name: "the only voter", servers: voters("n1"), id: "n1", quorumErr: "it is the only voter", cleanErr: "would leave 0 voters"},
		{name: "a nonvoter", servers: append(voters("n1", "n2", "n3"), raft.Server{ID: "r1", Suffrage: raft.Nonvoter}), id: "r1",
			unheard: unheardOf("r1", "n3")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(err error, want string) {
				t.Helper()
				if want == "" {
					assert.NoError(t, err)
				} else {
					assert.ErrorContains(t, err, want)
				}
			}
			check(quorumWithout(tt.servers, tt.id, tt.unheard), tt.quorumErr)
			check(cleanupRefusal(tt.servers, tt.id, tt.unheard), tt.cleanErr)
		})
	}
}

func TestNotMemberIsA404(t *testing.T) {
	err := fmt.Errorf("promote n9: %w", ErrNotMember)
	assert.ErrorIs(t, err, ErrNotMember)
	assert.ErrorIs(t, err, ErrUnknownID, "the API maps it to 404")
	assert.NotErrorIs(t, ErrUnknownID, ErrNotMember)
}
