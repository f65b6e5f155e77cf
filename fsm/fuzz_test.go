package fsm

import (
	"bytes"
	"io"
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
