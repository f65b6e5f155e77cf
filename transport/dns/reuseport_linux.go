package dns

import (
	"net"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePortConfig lets several UDP sockets of this process share one
// port, so that each core reads its own (the kernel spreads clients over
// them by address).
func reusePortConfig() net.ListenConfig {
	return net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
}

// udpSockets is how many UDP sockets share the port: one per core the
// process may use, at most 8.
func udpSockets() int { return min(max(runtime.GOMAXPROCS(0), 1), 8) }

// msgTrunc flags a datagram longer than the buffer it was read into.
const msgTrunc = unix.MSG_TRUNC
