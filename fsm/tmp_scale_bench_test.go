package fsm

import (
	"bytes"
	"io"
	"os"
	"testing"
	"time"
)

func TestTmpRestore1M(t *testing.T) {
	if os.Getenv("TMP_SCALE") == "" {
		t.Skip()
	}
	f := table(1000000)
	snap, _ := f.Snapshot()
	var s sink
	t0 := time.Now()
	if err := snap.Persist(&s); err != nil {
		t.Fatal(err)
	}
	t.Logf("persist %s, %d bytes", time.Since(t0), s.Len())
	data := s.Bytes()
	g := New(nil)
	t0 = time.Now()
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	t.Logf("restore %s", time.Since(t0))
}
