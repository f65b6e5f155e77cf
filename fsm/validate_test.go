package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every command a snapshot could not hold is refused by Apply, by name of
// the field at fault, without changing the table; the table then still
// survives a snapshot round trip.
func TestApplyRefusesWhatRestoreWouldRefuse(t *testing.T) {
	long := strings.Repeat("x", MaxIDLen+1)
	manyMeta := map[string]string{}
	for i := 0; i <= MaxMetaPairs; i++ {
		manyMeta[fmt.Sprint("k", i)] = "v"
	}
	tests := []struct {
		name  string
		cmd   Command
		field string // named in the error
	}{
		{"register without id", RegisterCmd{Type: "echo", Address: "127.0.0.1", Port: 1}, "id"},
		{"register without type", RegisterCmd{ID: "a", Address: "127.0.0.1", Port: 1}, "type"},
		{"register with an upper-case type", RegisterCmd{ID: "a", Type: "Echo", Address: "127.0.0.1", Port: 1}, "type"},
		{"register with a path in the id", RegisterCmd{ID: "../a", Type: "echo", Address: "127.0.0.1", Port: 1}, "id"},
		{"register with a long id", RegisterCmd{ID: long, Type: "echo", Address: "127.0.0.1", Port: 1}, "id"},
		{"register without address", RegisterCmd{ID: "a", Type: "echo", Port: 1}, "address"},
		{"register with port 0", RegisterCmd{ID: "a", Type: "echo", Address: "127.0.0.1"}, "port"},
		{"register with port 70000", RegisterCmd{ID: "a", Type: "echo", Address: "127.0.0.1", Port: 70000}, "port"},
		{"register with a ttl too short", RegisterCmd{ID: "a", Type: "echo", Address: "127.0.0.1", Port: 1, TTLMillis: 5}, "ttl"},
		{"register with a negative ttl", RegisterCmd{ID: "a", Type: "echo", Address: "127.0.0.1", Port: 1, TTLMillis: -1000}, "ttl"},
		{"register with an empty meta key", RegisterCmd{ID: "a", Type: "echo", Address: "127.0.0.1", Port: 1, Meta: map[string]string{"": "v"}}, "meta key"},
		{"register with a control character", RegisterCmd{ID: "a", Type: "echo", Address: "127.0.0.1", Port: 1, Meta: map[string]string{"k": "a\x00b"}}, "meta value"},
		{"register with too much meta", RegisterCmd{ID: "a", Type: "echo", Address: "127.0.0.1", Port: 1, Meta: manyMeta}, "meta"},
		{"register with an empty scope", RegisterCmd{ID: "a", Type: "echo", Address: "127.0.0.1", Port: 1, Scope: []string{}}, "scope"},
		{"register with a bad scope", RegisterCmd{ID: "a", Type: "echo", Address: "127.0.0.1", Port: 1, Scope: []string{"Bad"}}, "scope"},
		{"deregister without id", DeregisterCmd{}, "id"},
		{"deregister with a bad request id", DeregisterCmd{ID: "keep", RequestID: "a b"}, "request id"},
		{"remove without id", RemoveCmd{RegIndex: 1}, "id"},
		{"remove with a long reason", RemoveCmd{ID: "keep", RegIndex: 1, Reason: strings.Repeat("r", MaxReasonLen+1)}, "reason"},
		{"lease state without id", LeaseStateCmd{RegIndex: 1, Stale: true}, "id"},
		{"node meta without node", NodeMetaCmd{HTTPAddr: "127.0.0.1:1"}, "node id"},
		{"node meta without port", NodeMetaCmd{NodeID: "n1", HTTPAddr: "127.0.0.1"}, "http_addr"},
		{"node forget without node", NodeForgetCmd{}, "node id"},
		{"cluster id empty", ClusterIDCmd{}, "cluster_id"},
		{"cluster id with a space", ClusterIDCmd{ClusterID: "a b"}, "cluster_id"},
		{"empty batch", BatchCmd{}, "batch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := New(nil)
			apply(t, f, 1, RegisterCmd{ID: "keep", Type: "echo", Address: "127.0.0.1", Port: 9, TTLMillis: 2000})
			before := snapshotOf(t, f)
			hash := f.TableHash()

			assert.ErrorIs(t, Validate(tc.cmd), ErrBadCommand)
			res := apply(t, f, 2, tc.cmd)
			require.ErrorIs(t, res.Err, ErrBadCommand)
			assert.Contains(t, res.Err.Error(), tc.field)
			assert.Equal(t, hash, f.TableHash(), "a refused command changed the table")
			assert.Equal(t, uint64(2), f.Applied(), "a refused entry is still applied (as a no-op)")

			// Refused inside a batch too, and the rest of the batch applies.
			f2 := New(nil)
			require.NoError(t, f2.Restore(io.NopCloser(bytes.NewReader(before))))
			data, err := Encode(BatchCmd{Commands: []json.RawMessage{mustEncode(t, tc.cmd), mustEncode(t, reg("other", "echo", 2))}})
			require.NoError(t, err)
			br := f2.Apply(&raft.Log{Index: 3, Data: data}).(*BatchResult)
			assert.ErrorIs(t, br.Results[0].Err, ErrBadCommand)
			assert.NoError(t, br.Results[1].Err)

			// Whatever was applied still makes a snapshot that restores.
			for _, g := range []*FSM{f, f2} {
				h := New(nil)
				require.NoError(t, h.Restore(io.NopCloser(bytes.NewReader(snapshotOf(t, g)))))
				assert.Equal(t, g.TableHash(), h.TableHash())
			}
		})
	}
}

func mustEncode(t *testing.T, c Command) json.RawMessage {
	t.Helper()
	b, err := Encode(c)
	require.NoError(t, err)
	return b
}

// A snapshot holding what Apply refuses is refused too: the two agree.
func TestRestoreRefusesInvalidInstances(t *testing.T) {
	for name, svc := range map[string]string{
		"empty id":   `{"id":"","type":"echo","address":"h","port":1,"index":1}`,
		"bad type":   `{"id":"a","type":"E","address":"h","port":1,"index":1}`,
		"port 0":     `{"id":"a","type":"echo","address":"h","port":0,"index":1}`,
		"bad health": `{"id":"a","type":"echo","address":"h","port":1,"index":1,"health":"weird"}`,
	} {
		t.Run(name, func(t *testing.T) {
			f := New(nil)
			data := `{"version":1,"type_index":{"echo":1,"E":1},"services":[` + svc + `]}`
			require.Error(t, f.Restore(io.NopCloser(strings.NewReader(data))))
			assert.Equal(t, 0, f.Len())
		})
	}
}

// The observer hears of a batch once, after all of it is applied: a
// reader woken by it never sees part of an entry under that entry's index.
func TestBatchIsObservedWholeAndOnce(t *testing.T) {
	const n = 50
	type seen struct {
		index, typeIndex, applied uint64
		changes, instances        int
	}
	var calls []seen
	var f *FSM
	f = New(func(index uint64, cs []Change) {
		list, idx := f.InstancesOf("echo")
		calls = append(calls, seen{index: index, typeIndex: idx, applied: f.Applied(), changes: len(cs), instances: len(list)})
	})
	cmds := make([]json.RawMessage, n)
	for i := range cmds {
		cmds[i] = mustEncode(t, reg(fmt.Sprint("e", i), "echo", i+1))
	}
	data, err := Encode(BatchCmd{Commands: cmds})
	require.NoError(t, err)
	f.Apply(&raft.Log{Index: 5, Data: data})
	require.Len(t, calls, 1, "one notification per log entry")
	assert.Equal(t, seen{index: 5, typeIndex: 5, applied: 5, changes: n, instances: n}, calls[0])
}

// A write limited to some types (a register token bound to them) cannot
// create, replace or remove an instance of another type; the table is
// unchanged by the refusal.
func TestScopeIsDecidedAgainstTheTable(t *testing.T) {
	echoOnly := []string{"echo"}
	tests := []struct {
		name    string
		cmd     Command
		wantErr error
	}{
		{"register in scope", RegisterCmd{ID: "e2", Type: "echo", Address: "h", Port: 2, Scope: echoOnly}, nil},
		{"register of another type", RegisterCmd{ID: "x", Type: "db", Address: "h", Port: 2, Scope: echoOnly}, ErrOutOfScope},
		{"register over an id of another type", RegisterCmd{ID: "d1", Type: "echo", Address: "h", Port: 2, Scope: echoOnly}, ErrOutOfScope},
		{"re-register own id", RegisterCmd{ID: "e1", Type: "echo", Address: "h", Port: 3, Scope: echoOnly}, nil},
		{"deregister own id", DeregisterCmd{ID: "e1", Scope: echoOnly}, nil},
		{"deregister an id of another type", DeregisterCmd{ID: "d1", Scope: echoOnly}, ErrOutOfScope},
		{"deregister an id of another type with a request id", DeregisterCmd{ID: "d1", RequestID: "r1", Scope: echoOnly}, ErrOutOfScope},
		{"unscoped deregister", DeregisterCmd{ID: "d1"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := New(nil)
			apply(t, f, 1, reg("e1", "echo", 1))
			apply(t, f, 2, reg("d1", "db", 1))
			hash := f.TableHash()
			res := apply(t, f, 3, tc.cmd)
			if tc.wantErr == nil {
				assert.NoError(t, res.Err)
				return
			}
			assert.ErrorIs(t, res.Err, tc.wantErr)
			assert.Equal(t, hash, f.TableHash(), "a refused write changed the table")
			if d, ok := tc.cmd.(DeregisterCmd); ok && d.RequestID != "" {
				assert.False(t, f.RequestAppliedTo(d.RequestID, d.ID), "a refused request is not remembered")
			}
		})
	}
}

// Types that lose their last instance leave nothing behind, however many
// names were written; their watchers still see the index move.
func TestEmptiedTypesArePruned(t *testing.T) {
	f := New(nil)
	idx := uint64(0)
	for i := 0; i < 1000; i++ {
		typ := fmt.Sprint("t", i)
		idx++
		apply(t, f, idx, reg("a", typ, 1)) // moves "a" from the previous type
	}
	assert.Equal(t, 1, f.TypeCount())
	_, gone := f.InstancesOf("t0")
	assert.Equal(t, idx, gone, "an emptied type's index is the last vanishing")
	idx++
	apply(t, f, idx, DeregisterCmd{ID: "a"})
	assert.Equal(t, 0, f.TypeCount())
	_, last := f.InstancesOf("t999")
	assert.Equal(t, idx, last)

	g := New(nil)
	require.NoError(t, g.Restore(io.NopCloser(bytes.NewReader(snapshotOf(t, f)))))
	_, restored := g.InstancesOf("t999")
	assert.Equal(t, idx, restored)
	assert.Equal(t, 0, g.TypeCount())
}

// The first cluster id committed stays, through later ones and snapshots.
func TestClusterIDFirstWins(t *testing.T) {
	f := New(nil)
	assert.Equal(t, "", f.ClusterID())
	apply(t, f, 1, ClusterIDCmd{ClusterID: "abc"})
	apply(t, f, 2, ClusterIDCmd{ClusterID: "def"})
	assert.Equal(t, "abc", f.ClusterID())
	g := New(nil)
	require.NoError(t, g.Restore(io.NopCloser(bytes.NewReader(snapshotOf(t, f)))))
	assert.Equal(t, "abc", g.ClusterID())
}

// The hand-written matchers (they are on hot paths) agree with the
// regular expressions they replace.
func TestMatchersAgreeWithTheirRegexps(t *testing.T) {
	label := regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	id := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)
	for _, s := range []string{"", "a", "-", "a-", "-a", "a-b", "echo", "Echo", "e.x", "e_x", "0", "09-az", ".a", "a:b", "a/b",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", MaxIDLen), strings.Repeat("a", MaxIDLen+1), "a\x00", "é", "a b"} {
		assert.Equal(t, label.MatchString(s), isDNSLabel(s), "label %q", s)
		assert.Equal(t, id.MatchString(s) && len(s) <= MaxIDLen, isID(s), "id %q", s)
	}
}
