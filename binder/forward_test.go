package binder_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/binder"
)

// A follower's forward to a leader that stops answering is abandoned as
// soon as the follower knows a new leader, and the write reaches the new
// one, instead of holding until the write hold ends (when the write, out
// of time, would fail).
func TestForwardToASilentLeaderMovesToTheNewLeader(t *testing.T) {
	var silent atomic.Int32 // 1 + the index of the node whose forwards hang
	received := make(chan struct{}, 16)
	unblock := make(chan struct{})
	nodes := startNodesWith(t, 3, func(i int, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if int(silent.Load()) == i+1 && r.URL.Path == "/v1/internal/apply" {
				received <- struct{}{}
				select {
				case <-unblock:
				case <-r.Context().Done():
				}
			}
			api.ServeHTTP(w, r)
		})
	})
	t.Cleanup(func() { close(unblock) })
	leader := awaitLeader(t, nodes)
	from := (leader + 1) % 3
	silent.Store(int32(leader + 1))

	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		_, _, err := nodes[from].node.Register(ctx, binder.Registration{Type: "moved", Address: "127.0.0.1", Port: 7})
		done <- err
	}()
	<-received // the write is held by the silent leader
	_, err := nodes[leader].node.TransferLeadership(ctx, "")
	require.NoError(t, err)
	require.NoError(t, <-done, "the write must reach the new leader within the write hold")
	newLeader := awaitLeader(t, nodes)
	require.NotEqual(t, leader, newLeader)
	_, err = nodes[newLeader].node.Lookup("moved")
	require.NoError(t, err)
}
