package httpapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/binder"
)

// liveHeap is the heap that survives a collection, in bytes.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// Lookups of made-up types, each waiting a moment for an instance, leave
// nothing behind: the heap comes back to where it was and no per-name
// bookkeeping outlives its waiters.
func TestUnknownTypeLookupsLeaveNothingBehind(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 100 000 requests")
	}
	srv, node := newAPIWith(t, nil)
	h := srv.Config.Handler
	var unexpected atomic.Int64
	lookups := func(from, to int) {
		var wg sync.WaitGroup
		const workers = 32
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := from + w; i < to; i += workers {
					req := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/v1/lookup/nope-%d?wait=1ms", i), nil)
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != http.StatusNotFound {
						unexpected.Add(1)
					}
				}
			}()
		}
		wg.Wait()
	}
	lookups(0, 5000) // warm up pools and caches
	before := liveHeap()
	lookups(5000, 105000)
	after := liveHeap()
	require.Zero(t, unexpected.Load(), "every lookup of an unknown type answers 404")
	t.Logf("live heap: %d bytes before, %d after 100 000 lookups of distinct unknown types", before, after)
	assert.LessOrEqual(t, float64(after), 1.10*float64(before), "the heap grew with the number of names looked up")
	assert.Equal(t, binder.Footprint{}, node.Footprint(), "per-name bookkeeping left behind")
}
