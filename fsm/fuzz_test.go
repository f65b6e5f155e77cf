package fsm

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

func seedCommands(f *testing.F) {
	for _, c := range []Command{
		RegisterCmd{ID: "a", Type: "echo", Address: "127.0.0.1", Port: 1, Meta: map[string]string{"k": "v"}, TTLMillis: 5000},
		DeregisterCmd{ID: "a", RequestID: "r1"},
		RemoveCmd{ID: "a", RegIndex: 1, Reason: ReasonReportedDown},
		LeaseStateCmd{ID: "a", RegIndex: 1, Stale: true},
		NodeMetaCmd{NodeID: "n1", HTTPAddr: "127.0.0.1:8001"},
		NodeForgetCmd{NodeID: "n1"},
	} {
		b, _ := Encode(c)
		f.Add(b)
	}
	f.Add([]byte(`{"type":"batch/v1","body":{"commands":[{"type":"register/v1","body":{"id":"b","type":"t","address":"h","port":2}}]}}`))
	f.Add([]byte(`{"type":"register/v1","body":{"id":1}}`))
	f.Add([]byte(`{"type":`))
	f.Add([]byte{})
}

// Any log entry, however malformed, is applied without a panic; one that
// does not decode changes nothing.
func FuzzApply(f *testing.F) {
	seedCommands(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := New(nil)
		fsm.ApplyCommand(1, RegisterCmd{ID: "keep", Type: "echo", Address: "127.0.0.1", Port: 9})
		before := fsm.TableHash()
		res := fsm.Apply(&raft.Log{Index: 2, Data: data})
		if r, ok := res.(*Result); ok && r.Err != nil {
			if after := fsm.TableHash(); after != before {
				t.Fatalf("a refused entry changed the table")
			}
		}
		fsm.All()
		fsm.TableHash()
	})
}

// A corrupted or truncated snapshot is refused with an error, never a
// panic, and never a half-restored table.
func FuzzRestore(f *testing.F) {
	src := New(nil)
	src.ApplyCommand(1, RegisterCmd{ID: "a", Type: "echo", Address: "127.0.0.1", Port: 1, Meta: map[string]string{"k": "v"}})
	src.ApplyCommand(2, DeregisterCmd{ID: "zz", RequestID: "r"})
	snap, _ := src.Snapshot()
	var s sink
	_ = snap.Persist(&s)
	good := s.Bytes()
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"services":[{"id":"x","type":"t"},{"id":"x","type":"t"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := New(nil)
		fsm.ApplyCommand(1, RegisterCmd{ID: "keep", Type: "echo", Address: "127.0.0.1", Port: 9})
		before := fsm.TableHash()
		if err := fsm.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			if fsm.TableHash() != before {
				t.Fatalf("a refused snapshot changed the table")
			}
			return
		}
		fsm.All()
		fsm.TableHash()
	})
}

// gen turns fuzz bytes into a sequence of log entries: commands of every
// kind, with fields drawn from a small pool of names (so commands meet the
// same ids and types) mixed with edge values and raw bytes from the input.
type gen struct{ data []byte }

func (g *gen) byte() byte {
	if len(g.data) == 0 {
		return 0
	}
	b := g.data[0]
	g.data = g.data[1:]
	return b
}

func (g *gen) str(pool []string) string {
	b := g.byte()
	if int(b) < len(pool) {
		return pool[b]
	}
	// Raw input: possibly invalid UTF-8, control characters, anything.
	n := int(b % 12)
	if n > len(g.data) {
		n = len(g.data)
	}
	s := string(g.data[:n])
	g.data = g.data[n:]
	return s
}

var (
	idPool   = []string{"a", "b", "c", "", "a/b", "x:y", strings.Repeat("i", MaxIDLen+1)}
	typePool = []string{"echo", "time", "db", "", "Echo", "-x"}
	addrPool = []string{"127.0.0.1", "::1", "host.example", "", "bad host"}
	metaPool = []string{"k", "v", "", "\x00", "é", strings.Repeat("m", MaxMetaValueLen+1)}
	reqPool  = []string{"r1", "r2", "", "r 3"}
)

func (g *gen) command() Command {
	switch g.byte() % 10 {
	case 9:
		return CheckStatusCmd{ID: g.str(idPool), RegIndex: uint64(g.byte() % 8), CheckID: g.str(idPool),
			Status: g.str([]string{StatusPassing, StatusWarning, StatusCritical, "bad"}), Output: g.str(metaPool)}
	case 0, 1:
		c := RegisterCmd{ID: g.str(idPool), Type: g.str(typePool), Address: g.str(addrPool), Port: int(int8(g.byte())) * 300}
		if g.byte()%2 == 0 {
			c.Meta = map[string]string{g.str(metaPool): g.str(metaPool)}
		}
		if g.byte()%2 == 0 {
			c.Tags = []string{g.str(metaPool)}
			c.Checks = []Check{{ID: g.str(idPool), Kind: g.str([]string{CheckTTL, CheckTCP, CheckHTTP, "x"}), TTLMillis: int64(g.byte()) * 100,
				IntervalMillis: 1000, Target: g.str([]string{"127.0.0.1:1", "http://h/x", ""}), Status: g.str([]string{StatusPassing, StatusWarning, StatusCritical, ""}),
				Output: g.str(metaPool)}}
		}
		switch g.byte() % 4 {
		case 1:
			c.TTLMillis = int64(g.byte()) * 100
		case 2:
			c.Scope = []string{g.str(typePool)}
		case 3:
			c.Scope = []string{}
		}
		return c
	case 2:
		c := DeregisterCmd{ID: g.str(idPool), RequestID: g.str(reqPool)}
		if g.byte()%3 == 0 {
			c.Scope = []string{g.str(typePool)}
		}
		return c
	case 3:
		return RemoveCmd{ID: g.str(idPool), RegIndex: uint64(g.byte() % 8), Reason: g.str(metaPool), RequestID: g.str(reqPool)}
	case 4:
		return LeaseStateCmd{ID: g.str(idPool), RegIndex: uint64(g.byte() % 8), Stale: g.byte()%2 == 0}
	case 5:
		return NodeMetaCmd{NodeID: g.str(idPool), HTTPAddr: g.str([]string{"127.0.0.1:1", "h:2", "", "nohostport"})}
	case 6:
		return NodeForgetCmd{NodeID: g.str(idPool)}
	case 7:
		return ClusterIDCmd{ClusterID: g.str([]string{"c1", "c2", ""})}
	default:
		var cmds []json.RawMessage
		for i := 0; i < int(g.byte()%4)+1; i++ {
			if b, err := Encode(g.command()); err == nil {
				cmds = append(cmds, b)
			}
		}
		return BatchCmd{Commands: cmds}
	}
}

// Whatever sequence of commands the log holds, whatever Apply accepted of
// it, Snapshot then Restore gives the same table: same instances, same
// hash, same indexes, and a snapshot of the restored table that is byte
// for byte the first one.
func FuzzSnapshotRoundTrip(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 10, 0, 0})
	f.Add([]byte{0, 3, 0, 0, 10, 0, 0, 2, 0, 0, 0})
	f.Add([]byte{1, 0, 0, 0, 10, 1, 1, 3, 8, 0, 0, 10, 1, 0, 0, 20, 0, 0, 2, 0, 0})
	f.Add([]byte{8, 3, 0, 1, 0, 0, 9, 0, 0, 2, 1, 0, 0, 7, 0, 5, 2, 0})
	f.Add([]byte{0, 0, 1, 0, 10, 0, 2, 1, 4, 0, 0, 0, 0, 0, 2, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &gen{data: data}
		src := New(nil)
		for index := uint64(1); len(g.data) > 0 && index < 200; index++ {
			b, err := Encode(g.command())
			if err != nil {
				continue
			}
			src.Apply(&raft.Log{Index: index, Data: b})
		}
		first := persist(t, src)
		dst := New(nil)
		dst.ApplyCommand(1, RegisterCmd{ID: "old", Type: "gone", Address: "127.0.0.1", Port: 1})
		if err := dst.Restore(io.NopCloser(bytes.NewReader(first))); err != nil {
			t.Fatalf("a snapshot of what Apply accepted does not restore: %v\n%s", err, first)
		}
		if src.TableHash() != dst.TableHash() {
			t.Fatalf("hash differs after restore")
		}
		a, ai := src.All()
		b, bi := dst.All()
		if ai != bi || len(a) != len(b) {
			t.Fatalf("tables differ: %d at %d, %d at %d", len(a), ai, len(b), bi)
		}
		for i := range a {
			a[i].encoded, b[i].encoded = nil, nil
			if !reflect.DeepEqual(a[i], b[i]) {
				t.Fatalf("instance %d differs: %+v vs %+v", i, a[i], b[i])
			}
		}
		if src.Applied() != dst.Applied() || src.ClusterID() != dst.ClusterID() || src.TypeCount() != dst.TypeCount() {
			t.Fatalf("indexes differ after restore")
		}
		if second := persist(t, dst); !bytes.Equal(first, second) {
			t.Fatalf("snapshot of the restored table differs:\n%s\n%s", first, second)
		}
	})
}

func persist(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var s sink
	if err := snap.Persist(&s); err != nil {
		t.Fatal(err)
	}
	return s.Bytes()
}
