package raftnet

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A dialled Raft connection gives up on a peer that stopped acknowledging
// after userTimeout, so that raft dials it again (quickly) once its link
// is back instead of waiting for TCP's next retransmission.
func TestDialledConnectionsHaveAUserTimeout(t *testing.T) {
	layer, err := Listen("127.0.0.1:0", "")
	require.NoError(t, err)
	defer layer.Close()
	go func() {
		for {
			c, err := layer.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	c, err := layer.Dial(raft.ServerAddress(layer.Addr().String()), time.Second)
	require.NoError(t, err)
	defer c.Close()
	raw, err := c.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	var got int
	var gerr error
	require.NoError(t, raw.Control(func(fd uintptr) {
		got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	}))
	require.NoError(t, gerr)
	require.Equal(t, int(userTimeout.Milliseconds()), got)
}

// Dial gives up after its timeout on a peer that never answers, however
// it splits the wait into attempts.
func TestDialGivesUpOnASilentPeerAfterTimeout(t *testing.T) {
	layer, err := Listen("127.0.0.1:0", "")
	require.NoError(t, err)
	defer layer.Close()
	silent := fullBacklogListener(t)
	_, err = layer.Dial(raft.ServerAddress(silent), 1200*time.Millisecond)
	require.Error(t, err)
	require.True(t, isTimeout(err), "want a timeout, got %v", err)
}

// fullBacklogListener is a listening socket whose accept queue is full and
// never drained: the kernel drops further SYNs, as for a host whose link
// is down.
func fullBacklogListener(t *testing.T) string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	require.NoError(t, unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, unix.Listen(fd, 0))
	sa, err := unix.Getsockname(fd)
	require.NoError(t, err)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*unix.SockaddrInet4).Port))
	// Fill the queue: connections that complete but are never accepted.
	for range 4 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
	}
	return addr
}
