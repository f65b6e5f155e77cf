package fsm

import (
	"bytes"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func withChecks(id, typ string, port int, checks ...Check) RegisterCmd {
	return RegisterCmd{ID: id, Type: typ, Address: "127.0.0.1", Port: port, Tags: []string{"v1"}, Checks: checks}
}

func ttlCheck(id, status string) Check {
	return Check{ID: id, Kind: CheckTTL, TTLMillis: 10000, Status: status}
}

// A check's status moves only through check-status commands naming the
// registration; the instance's status is the worst of its checks, and a
// stale lease counts as a warning.
func TestCheckStatusAndAggregate(t *testing.T) {
	f := New(nil)
	require.NoError(t, apply(t, f, 1, withChecks("a", "web", 1, ttlCheck("service:a", StatusCritical))).Err)
	inst, _ := f.Get("a")
	assert.Equal(t, StatusCritical, inst.Status(), "a check starts as given (critical, as Consul does by default)")
	assert.Empty(t, f.HealthyOf("web"), "lookups never hand out a critical instance")

	require.NoError(t, apply(t, f, 2, CheckStatusCmd{ID: "a", RegIndex: 1, CheckID: "service:a", Status: StatusPassing, Output: "ok"}).Err)
	inst, _ = f.Get("a")
	assert.Equal(t, StatusPassing, inst.Status())
	assert.Equal(t, "ok", inst.Checks[0].Output)
	assert.Len(t, f.HealthyOf("web"), 1)

	assert.ErrorIs(t, apply(t, f, 3, CheckStatusCmd{ID: "a", RegIndex: 9, CheckID: "service:a", Status: StatusCritical}).Err, ErrSuperseded)
	assert.ErrorIs(t, apply(t, f, 4, CheckStatusCmd{ID: "a", RegIndex: 1, CheckID: "nope", Status: StatusCritical}).Err, ErrUnknownInstance)
	hash := f.TableHash()
	require.NoError(t, apply(t, f, 5, CheckStatusCmd{ID: "a", RegIndex: 1, CheckID: "service:a", Status: StatusPassing, Output: "ok"}).Err)
	assert.Equal(t, hash, f.TableHash(), "the same status again changes nothing")

	// Passing beats warning; warning beats nothing; critical never.
	require.NoError(t, apply(t, f, 6, withChecks("b", "web", 2, ttlCheck("service:b", StatusWarning))).Err)
	healthy := f.HealthyOf("web")
	require.Len(t, healthy, 1)
	assert.Equal(t, "a", healthy[0].ID)
	require.NoError(t, apply(t, f, 7, CheckStatusCmd{ID: "a", RegIndex: 1, CheckID: "service:a", Status: StatusCritical}).Err)
	healthy = f.HealthyOf("web")
	require.Len(t, healthy, 1)
	assert.Equal(t, "b", healthy[0].ID, "with none passing, the warning one")

	g := New(nil)
	require.NoError(t, g.Restore(io.NopCloser(bytes.NewReader(snapshotOf(t, f)))))
	assert.Equal(t, f.TableHash(), g.TableHash())
	owner, ok := g.CheckOwner("service:b")
	assert.True(t, ok)
	assert.Equal(t, "b", owner)
}

// A check id names one check in the whole cluster: a registration naming
// another instance's check id is refused; the owner may keep it.
func TestCheckIDsAreUnique(t *testing.T) {
	f := New(nil)
	require.NoError(t, apply(t, f, 1, withChecks("a", "web", 1, ttlCheck("c1", StatusPassing))).Err)
	assert.ErrorIs(t, apply(t, f, 2, withChecks("b", "web", 2, ttlCheck("c1", StatusPassing))).Err, ErrCheckTaken)
	assert.NoError(t, apply(t, f, 3, withChecks("a", "web", 1, ttlCheck("c1", StatusWarning))).Err, "re-registering the owner")
	require.NoError(t, apply(t, f, 4, DeregisterCmd{ID: "a"}).Err)
	_, ok := f.CheckOwner("c1")
	assert.False(t, ok, "a removed instance frees its check ids")
	assert.NoError(t, apply(t, f, 5, withChecks("b", "web", 2, ttlCheck("c1", StatusPassing))).Err)
}

func TestCheckValidation(t *testing.T) {
	for name, c := range map[string]Check{
		"no id":        {Kind: CheckTTL, TTLMillis: 1000, Status: StatusPassing},
		"bad kind":     {ID: "c", Kind: "grpc", Status: StatusPassing},
		"bad status":   {ID: "c", Kind: CheckTTL, TTLMillis: 1000, Status: "ok"},
		"ttl too low":  {ID: "c", Kind: CheckTTL, TTLMillis: 1, Status: StatusPassing},
		"tcp no port":  {ID: "c", Kind: CheckTCP, IntervalMillis: 1000, Target: "h", Status: StatusPassing},
		"http not url": {ID: "c", Kind: CheckHTTP, IntervalMillis: 1000, Target: "ftp://h", Status: StatusPassing},
	} {
		err := Validate(withChecks("a", "web", 1, c))
		assert.ErrorIs(t, err, ErrBadCommand, name)
	}
	assert.ErrorIs(t, Validate(withChecks("a", "web", 1, ttlCheck("c", StatusPassing), ttlCheck("c", StatusPassing))), ErrBadCommand, "duplicate check ids")
	assert.ErrorIs(t, Validate(withChecks("a", "web", 1, ttlCheck("service:b", StatusPassing))), ErrBadCommand, "another instance's default check id")
	assert.ErrorIs(t, Validate(withChecks("a", "web", 1, ttlCheck("service:a:x", StatusPassing))), ErrBadCommand)
	assert.ErrorIs(t, Validate(withChecks("a", "web", 1, ttlCheck("lieur:a", StatusPassing))), ErrBadCommand, "reserved prefix")
	assert.NoError(t, Validate(withChecks("a", "web", 1, ttlCheck("service:a", StatusPassing), ttlCheck("service:a:2", StatusPassing))))
	assert.NoError(t, Validate(withChecks("a", "web", 1, Check{ID: "h", Kind: CheckHTTP, IntervalMillis: 1000, TimeoutMillis: 500, Target: "http://127.0.0.1:8080/health", Status: StatusCritical})))
}

// A restore that changes only an instance's health (same registration)
// tells the observer, so that a node catching up through a snapshot wakes
// the watchers of that type.
func TestRestoreReportsHealthChanges(t *testing.T) {
	src := New(nil)
	require.NoError(t, apply(t, src, 1, withChecks("a", "web", 1, ttlCheck("service:a", StatusPassing))).Err)
	stale := snapshotOf(t, src)
	require.NoError(t, apply(t, src, 2, CheckStatusCmd{ID: "a", RegIndex: 1, CheckID: "service:a", Status: StatusCritical}).Err)
	fresh := snapshotOf(t, src)

	var got []Change
	dst := New(func(_ uint64, cs []Change) { got = append(got, cs...) })
	require.NoError(t, dst.Restore(io.NopCloser(bytes.NewReader(stale))))
	got = nil
	require.NoError(t, dst.Restore(io.NopCloser(bytes.NewReader(fresh))))
	require.Len(t, got, 1)
	assert.Equal(t, HealthChanged, got[0].Kind)
	assert.Equal(t, StatusCritical, got[0].Instance.Status())
}
