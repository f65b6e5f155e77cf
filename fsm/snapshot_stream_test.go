package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
)

// The streamed snapshot is the document encoding/json writes for
// snapshotData, byte for byte, with and without the optional fields.
func TestPersistWritesTheDocumentOfSnapshotData(t *testing.T) {
	empty := New(nil)
	full := New(nil)
	for i := 0; i < 50; i++ {
		full.ApplyCommand(uint64(i+1), RegisterCmd{ID: fmt.Sprintf("svc-%03d", 49-i), Type: fmt.Sprintf("t%d", i%4), Address: "10.0.0.1", Port: 1 + i,
			Meta: map[string]string{"zone": "a<b>&c", "k": fmt.Sprint(i)}, TTLMillis: int64(i % 2 * 5000), Tags: []string{"x"}})
	}
	full.ApplyCommand(60, DeregisterCmd{ID: "svc-007", RequestID: "r1"})
	full.ApplyCommand(61, NodeMetaCmd{NodeID: "n1", HTTPAddr: "127.0.0.1:9", Format: 2})
	full.ApplyCommand(62, ClusterIDCmd{ClusterID: "0123456789abcdef0123456789abcdef"})
	for name, f := range map[string]*FSM{"empty": empty, "full": full} {
		t.Run(name, func(t *testing.T) {
			got := snapshotOf(t, f)

			snap, err := f.Snapshot()
			require.NoError(t, err)
			s := snap.(*snapshot)
			want := snapshotData{Version: SnapshotVersion, Applied: s.applied, LastChange: s.lastChange, TypeIndex: s.typeIndex, Nodes: s.nodes,
				Services: make([]*Instance, len(s.services)), Requests: s.requests, Vanished: s.vanished, ClusterID: s.clusterID}
			if len(s.formats) > 0 {
				want.NodeFormats = s.formats
			}
			for i, inst := range s.services {
				cp := *inst
				want.Services[i] = &cp
			}
			sort.Slice(want.Services, func(i, j int) bool { return want.Services[i].ID < want.Services[j].ID })
			var buf bytes.Buffer
			require.NoError(t, json.NewEncoder(&buf).Encode(&want))
			require.Equal(t, buf.String(), string(got))

			g := New(nil)
			require.NoError(t, g.Restore(nopCloser{bytes.NewReader(got)}))
			require.Equal(t, f.TableHash(), g.TableHash())
		})
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// A large restore reaches the observer in parts, every part at the
// snapshot's index, each after the whole table is in place, the
// additions in id order.
func TestRestoreHandsLargeDifferencesOverInParts(t *testing.T) {
	n := 2*restoreChunk + 17
	f := New(nil)
	for i := 0; i < n; i++ {
		f.ApplyCommand(uint64(i+1), RegisterCmd{ID: fmt.Sprintf("svc-%05d", n-i), Type: "t", Address: "10.0.0.1", Port: 1 + i})
	}
	data := snapshotOf(t, f)

	var parts int
	var ids []string
	var g *FSM
	g = New(func(index uint64, cs []Change) {
		parts++
		require.Equal(t, uint64(n), index)
		require.LessOrEqual(t, len(cs), restoreChunk)
		require.True(t, g.HasType("t"))
		list, _ := g.InstancesOf("t")
		require.Len(t, list, n, "the table is whole before the first part")
		for _, c := range cs {
			require.Equal(t, Added, c.Kind)
			ids = append(ids, c.Instance.ID)
		}
	})
	require.NoError(t, g.Restore(nopCloser{bytes.NewReader(data)}))
	require.Equal(t, 3, parts)
	require.Len(t, ids, n)
	require.True(t, sort.StringsAreSorted(ids))
}
