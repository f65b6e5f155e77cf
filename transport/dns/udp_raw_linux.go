package dns

import (
	"errors"
	"net"
	"syscall"
	"time"
	"unsafe"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// On Linux a socket's batches go straight to recvmmsg and sendmmsg
// through the socket's raw descriptor, still waiting in Go's network
// poller: golang.org/x/net's batch calls build a net.UDPAddr for every
// packet read and a sockaddr for every answer, where the sources can
// stay raw, read by one call and handed back to the next.

// mmsghdr is struct mmsghdr: a msghdr and the length the kernel moved.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// rawBatch is one socket's receive and send slots.
type rawBatch struct {
	rc syscall.RawConn

	in    []mmsghdr
	inIov []unix.Iovec
	bufs  [][]byte
	names []unix.RawSockaddrInet6 // room for either family's address
	oobs  [][]byte

	out    []mmsghdr
	outIov []unix.Iovec
	outOOB [][]byte
}

func newRawBatch(u *udpSocket) (*rawBatch, error) {
	rc, err := u.conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &rawBatch{rc: rc,
		in: make([]mmsghdr, udpBatch), inIov: make([]unix.Iovec, udpBatch),
		bufs: make([][]byte, udpBatch), names: make([]unix.RawSockaddrInet6, udpBatch),
		oobs: make([][]byte, udpBatch),
		out:  make([]mmsghdr, udpBatch), outIov: make([]unix.Iovec, udpBatch),
		outOOB: make([][]byte, udpBatch)}
	for i := range b.in {
		b.bufs[i] = make([]byte, maxQuerySize)
		b.inIov[i].Base = &b.bufs[i][0]
		b.inIov[i].SetLen(maxQuerySize)
		b.in[i].hdr.Iov = &b.inIov[i]
		b.in[i].hdr.SetIovlen(1)
		b.in[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		if u.dst {
			b.oobs[i] = make([]byte, oobSize)
			b.in[i].hdr.Control = &b.oobs[i][0]
		}
		b.reset(i)
	}
	return b, nil
}

// reset makes slot i ready for the next read: the kernel wrote the
// lengths of the address and control message it filled in.
func (b *rawBatch) reset(i int) {
	b.in[i].hdr.Namelen = unix.SizeofSockaddrInet6
	b.in[i].hdr.SetControllen(len(b.oobs[i]))
	b.in[i].hdr.Flags = 0
	b.in[i].n = 0
}

func mmsg(trap uintptr, fd uintptr, hs []mmsghdr) (int, syscall.Errno) {
	n, _, errno := unix.Syscall6(trap, fd, uintptr(unsafe.Pointer(&hs[0])), uintptr(len(hs)), unix.MSG_DONTWAIT, 0, 0)
	return int(n), errno
}

// read fills the receive slots, waiting in the poller while there is
// nothing to read.
func (b *rawBatch) read() (int, error) { return b.call(b.rc.Read, unix.SYS_RECVMMSG, b.in) }

// write sends the first k answer slots; it returns how many went, and the
// error that stopped the next one.
func (b *rawBatch) write(k int) (int, error) {
	return b.call(b.rc.Write, unix.SYS_SENDMMSG, b.out[:k])
}

// call makes the batch system call trap on hs, waiting in the poller (wait
// is the raw conn's Read or Write) while the socket is not ready.
func (b *rawBatch) call(wait func(func(fd uintptr) bool) error, trap uintptr, hs []mmsghdr) (int, error) {
	var n int
	var errno syscall.Errno
	err := wait(func(fd uintptr) bool {
		n, errno = mmsg(trap, fd, hs)
		return errno != unix.EAGAIN && errno != unix.EINTR
	})
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return n, nil
}

// serveRaw answers u's packets until u is closed.
func (s *Server) serveRaw(b *rawBatch) error {
	keyBuf := make([]byte, 0, maxKeyLen)
	outBufs := make([][]byte, udpBatch)
	for i := range outBufs {
		outBufs[i] = make([]byte, 0, mdns.MinMsgSize)
	}
	var backoff time.Duration
	for {
		n, err := s.readBatch(b.read)
		if err != nil {
			if isClosed(err) {
				return nil
			}
			if s.readFailed(err, &backoff) {
				continue
			}
			return err
		}
		backoff = 0
		k := 0
		for i := range n {
			m := &b.in[i]
			if m.hdr.Flags&unix.MSG_TRUNC != 0 {
				s.metrics.malformed.WithLabelValues("unparsable").Inc()
				continue
			}
			wire := s.answerPacket(b.bufs[i][:m.n], outBufs[i][:0], keyBuf)
			if len(wire) == 0 {
				continue
			}
			if cap(wire) <= 2*mdns.MinMsgSize {
				outBufs[i] = wire[:0] // keep a grown buffer, within reason
			}
			o := &b.out[k]
			o.hdr = unix.Msghdr{Name: m.hdr.Name, Namelen: m.hdr.Namelen, Iov: &b.outIov[k]}
			o.hdr.SetIovlen(1)
			b.outIov[k].Base = &wire[0]
			b.outIov[k].SetLen(len(wire))
			if b.oobs[i] != nil {
				if c := replyOOB(b.oobs[i][:m.hdr.Controllen]); len(c) > 0 {
					b.outOOB[k] = c
					o.hdr.Control = &c[0]
					o.hdr.SetControllen(len(c))
				}
			}
			k++
		}
		for sent := 0; sent < k; {
			got, err := b.write(k - sent)
			if isClosed(err) {
				return nil
			}
			if err != nil {
				// One client's unreachable address must not cost the others
				// their answers: skip the packet that failed.
				s.log.Debug("writing DNS answers", "error", err)
				got = max(got, 1)
			}
			copy(b.out, b.out[got:k-sent])
			sent += got
		}
		for i := range n {
			b.reset(i)
		}
		for i := range k {
			b.outOOB[i] = nil
		}
	}
}

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }

// serveUDPRaw serves u with raw batches; false if the socket offers no
// raw descriptor (then serveUDP's portable loop serves it).
func (s *Server) serveUDPRaw(u *udpSocket) (bool, error) {
	b, err := newRawBatch(u)
	if err != nil {
		return false, nil
	}
	return true, s.serveRaw(b)
}
