package fsm

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"testing"

	"github.com/hashicorp/raft"
)

func BenchmarkApplyRegister(b *testing.B) {
	f := New(nil)
	logs := make([][]byte, 1024)
	for i := range logs {
		logs[i], _ = Encode(RegisterCmd{ID: fmt.Sprintf("echo-%d", i), Type: fmt.Sprintf("t%d", i%16), Address: "127.0.0.1", Port: 1 + i})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.Apply(&raft.Log{Index: uint64(i + 1), Data: logs[i%len(logs)]})
	}
}

func table(n int) *FSM {
	f := New(nil)
	for i := 0; i < n; i++ {
		f.ApplyCommand(uint64(i+1), RegisterCmd{ID: fmt.Sprintf("svc-%06d", i), Type: fmt.Sprintf("t%d", i%50), Address: "10.0.0.1", Port: 1 + i%60000, Meta: map[string]string{"zone": "a"}})
	}
	return f
}

func BenchmarkSnapshotPersist100k(b *testing.B) {
	f := table(100000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		snap, _ := f.Snapshot()
		var s sink
		if err := snap.Persist(&s); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(s.Len()))
	}
}

func BenchmarkRestore100k(b *testing.B) {
	f := table(100000)
	snap, _ := f.Snapshot()
	var s sink
	if err := snap.Persist(&s); err != nil {
		b.Fatal(err)
	}
	data := s.Bytes()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g := New(nil)
		if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHeapPerInstance reports the live heap one instance costs in a
// table of 100 000.
func BenchmarkHeapPerInstance(b *testing.B) {
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f := table(100000)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/100000, "heap-B/instance")
		runtime.KeepAlive(f)
	}
}

func BenchmarkInstancesOf(b *testing.B) {
	f := table(1000)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			f.InstancesOf("t7")
		}
	})
}
