package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/httpapi"
)

// BenchmarkLookupHandler measures the lookup path in the server (routing,
// metrics, read checks, round-robin, encoding), without the network.
func BenchmarkLookupHandler(b *testing.B) {
	reg := prometheus.NewRegistry()
	var h http.Handler
	_, node := newAPIWith(b, func(node *binder.Node) []httpapi.Option {
		h = httpapi.NewServer(node, nil, httpapi.WithMetrics(reg)) // driven directly, without the network
		return nil
	})
	for p := 1; p <= 3; p++ {
		if _, _, err := node.Register(context.Background(), binder.Registration{Type: "echo", Address: "127.0.0.1", Port: p, Meta: map[string]string{"zone": "a"}}); err != nil {
			b.Fatal(err)
		}
	}
	req := httptest.NewRequest(http.MethodGet, "/v1/lookup/echo", nil)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
}
