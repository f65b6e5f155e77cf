package dns

import (
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// startWithReadErrors serves b on a loopback port with every batch read
// first asking fail.
func startWithReadErrors(t *testing.T, fail func() error) *Server {
	t.Helper()
	b := &tableBinder{}
	b.set("10.0.0.1")
	s, err := New(b, Config{}, nil)
	require.NoError(t, err)
	s.readErr = fail
	require.NoError(t, s.Listen("127.0.0.1:0"))
	require.NoError(t, s.Start())
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// A read the kernel fails for want of memory or buffers costs the socket
// a back-off, not its loop: the agent stops when a DNS loop ends, and the
// binder would stop answering lookups over a passing shortage.
func TestTransientReadErrorsKeepTheSocketServing(t *testing.T) {
	var failures atomic.Int32
	s := startWithReadErrors(t, func() error {
		if failures.Add(1) <= 3 {
			return syscall.ENOBUFS
		}
		return nil
	})
	c := &mdns.Client{Timeout: 500 * time.Millisecond}
	deadline := time.Now().Add(10 * time.Second)
	for {
		in, _, err := c.Exchange(question("echo.service.lieur.", mdns.TypeA, 1), s.Addr())
		if err == nil {
			require.Len(t, in.Answer, 1)
			break
		}
		require.True(t, time.Now().Before(deadline), "no answer after the failed reads: %v", err)
	}
	// The port's sockets failed three reads between them, all counted.
	require.Equal(t, float64(3), exposed(t, s, "lieur_dns_read_errors_total"))
	select {
	case err := <-s.Err():
		t.Fatalf("a transient read error ended the server: %v", err)
	default:
	}
}

// Any other read error ends the loop and is reported, so that the agent
// stops rather than run without DNS.
func TestOtherReadErrorsEndTheServer(t *testing.T) {
	s := startWithReadErrors(t, func() error { return syscall.EINVAL })
	select {
	case err := <-s.Err():
		require.ErrorIs(t, err, syscall.EINVAL)
	case <-time.After(10 * time.Second):
		t.Fatal("the read error was not reported")
	}
	require.Zero(t, exposed(t, s, "lieur_dns_read_errors_total"))
}

// exposed is the value of the counter name among what s gives the
// agent's /metrics registry.
func exposed(t *testing.T, s *Server, name string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collectors()...)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			require.Len(t, mf.GetMetric(), 1)
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("%s is not among the server's collectors", name)
	return 0
}
