package httpapi_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/httpapi"
	"github.com/lieur/lieur/transport/raftnet"
)

// BenchmarkLookupHandler measures the lookup path in the server (routing,
// metrics, read checks, round-robin, encoding), without the network.
func BenchmarkLookupHandler(b *testing.B) {
	stream, err := raftnet.Listen("127.0.0.1:0", "")
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	peer := httpapi.NewPeerClient()
	defer peer.Close()
	node, err := binder.New(binder.Config{
		ID: "n1", HTTPAddr: ln.Addr().String(), DataDir: b.TempDir(),
		Peers:  []binder.PeerAddr{{ID: "n1", RaftAddr: stream.Addr().String()}},
		Stream: stream, Peer: peer,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer node.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = node.Run(ctx) }()
	for !node.CaughtUp() {
		time.Sleep(10 * time.Millisecond)
	}
	for p := 1; p <= 3; p++ {
		if _, _, err := node.Register(ctx, binder.Registration{Type: "echo", Address: "127.0.0.1", Port: p, Meta: map[string]string{"zone": "a"}}); err != nil {
			b.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	h := httpapi.NewServer(node, nil, httpapi.WithMetrics(reg))
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
