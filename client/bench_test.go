package client

import (
	"context"
	"testing"

	"github.com/lieur/lieur/transport/wire"
)

// BenchmarkResolveCached is the client's fast path: a type resolved once is
// answered from the cache with no network traffic.
func BenchmarkResolveCached(b *testing.B) {
	tab := newTable()
	tab.register(wire.Instance{ID: "w1", Type: "web", Address: "10.0.0.1", Port: 80})
	fb := newFakeBinder(b, "n1", tab)
	c, err := New(Config{Binders: urlsOf(fb)})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Resolve(ctx, "web"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Resolve(ctx, "web"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
