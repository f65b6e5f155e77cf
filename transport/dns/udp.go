package dns

import (
	"errors"
	"net"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// UDP is served by a loop of this package rather than miekg/dns's
// server: it reads and writes packets in batches (recvmmsg/sendmmsg on
// Linux, one system call for up to udpBatch packets) on one
// socket per core sharing the port (SO_REUSEPORT), and answers the common
// query from the fast path's cache. Everything else goes through the same
// reply as TCP, after the same header checks miekg/dns's server applies.
// On Linux the batches are raw system calls (udp_raw_linux.go); the loop
// below, through golang.org/x/net's batch calls, serves elsewhere.

const (
	// udpBatch is how many packets one system call reads or writes at most.
	udpBatch = 64
	// maxQuerySize: a query is a question and perhaps an OPT record; a
	// larger datagram is cut by the kernel and counted as unparsable.
	maxQuerySize = 4096
)

// batchConn is what ipv4.PacketConn and ipv6.PacketConn both offer.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// udpSocket is one socket of the port and how its packets carry their
// destination address.
type udpSocket struct {
	conn *net.UDPConn
	bc   batchConn
	// dst, when the socket is bound to a wildcard address: read each
	// packet's destination, and answer from it, so that a multi-homed
	// host answers from the address it was asked at.
	dst bool
}

func newUDPSocket(conn *net.UDPConn) (*udpSocket, error) {
	local := conn.LocalAddr().(*net.UDPAddr)
	u := &udpSocket{conn: conn, bc: ipv4.NewPacketConn(conn)}
	if !local.IP.IsUnspecified() {
		return u, nil
	}
	// A wildcard socket is dual-stack where the kernel allows it: ask for
	// the destination of both families' packets; one of the two may be
	// refused, not both.
	u.dst = true
	err4 := ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst, true)
	err6 := ipv6.NewPacketConn(conn).SetControlMessage(ipv6.FlagDst, true)
	if err4 != nil && err6 != nil {
		return nil, errors.Join(err4, err6)
	}
	return u, nil
}

// oobSize is room for a packet-info control message of either family.
var oobSize = max(len(ipv4.NewControlMessage(ipv4.FlagDst)), len(ipv6.NewControlMessage(ipv6.FlagDst)))

// replyOOB is the control message that sends an answer from the address
// the query (whose control message is oob) was sent to: an IPv4 one for
// an IPv4 destination, even on an IPv6 socket, as IPv6's would drop it.
func replyOOB(oob []byte) []byte {
	var dst net.IP
	var cm6 ipv6.ControlMessage
	var cm4 ipv4.ControlMessage
	switch {
	case cm6.Parse(oob) == nil && cm6.Dst != nil:
		dst = cm6.Dst
	case cm4.Parse(oob) == nil && cm4.Dst != nil:
		dst = cm4.Dst
	default:
		return nil
	}
	if dst.To4() == nil {
		return (&ipv6.ControlMessage{Src: dst}).Marshal()
	}
	return (&ipv4.ControlMessage{Src: dst}).Marshal()
}

// maxReadBackoff bounds the wait between reads that keep failing.
const maxReadBackoff = time.Second

// readFailed decides what a failed batch read does to a socket's loop. The
// kernel short of memory or buffers for now is an error the socket
// recovers from: it is logged and counted, and the loop reads again after
// backoff, which doubles up to maxReadBackoff while reads keep failing;
// losing the socket would stop the binder answering DNS, and the agent
// stops when a DNS loop ends. Anything else ends the loop. (An unconnected
// UDP socket without IP_RECVERR, as these are, is never handed ICMP
// errors on a read.)
func (s *Server) readFailed(err error, backoff *time.Duration) (again bool) {
	if !errors.Is(err, syscall.ENOMEM) && !errors.Is(err, syscall.ENOBUFS) {
		return false
	}
	s.metrics.readErrors.Inc()
	*backoff = min(max(2**backoff, time.Millisecond), maxReadBackoff)
	s.log.Warn("reading DNS queries failed; reading again", "error", err, "after", *backoff)
	select {
	case <-s.closing:
	case <-time.After(*backoff):
	}
	return true
}

// readBatch is read, unless a test's readErr fails it first.
func (s *Server) readBatch(read func() (int, error)) (int, error) {
	if s.readErr != nil {
		if err := s.readErr(); err != nil {
			return 0, err
		}
	}
	return read()
}

// serveUDP answers u's packets until u is closed.
func (s *Server) serveUDP(u *udpSocket) error {
	if served, err := s.serveUDPRaw(u); served {
		return err
	}
	in := make([]ipv4.Message, udpBatch)
	out := make([]ipv4.Message, 0, udpBatch)
	outBufs := make([][]byte, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, maxQuerySize)}
		if u.dst {
			in[i].OOB = make([]byte, oobSize)
		}
		outBufs[i] = make([]byte, 0, mdns.MinMsgSize)
	}
	keyBuf := make([]byte, 0, maxKeyLen)
	read := func() (int, error) { return u.bc.ReadBatch(in, 0) }
	var backoff time.Duration
	for {
		n, err := s.readBatch(read)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if s.readFailed(err, &backoff) {
				continue
			}
			return err
		}
		backoff = 0
		out = out[:0]
		for i := range n {
			m := &in[i]
			if m.Flags&msgTrunc != 0 {
				s.metrics.malformed.WithLabelValues("unparsable").Inc()
				continue
			}
			wire := s.answerPacket(m.Buffers[0][:m.N], outBufs[i][:0], keyBuf)
			if wire == nil {
				continue
			}
			if cap(wire) <= 2*mdns.MinMsgSize {
				outBufs[i] = wire[:0] // keep a grown buffer, within reason
			}
			reply := ipv4.Message{Buffers: [][]byte{wire}, Addr: m.Addr}
			if u.dst {
				reply.OOB = replyOOB(m.OOB[:m.NN])
			}
			out = append(out, reply)
		}
		for len(out) > 0 {
			sent, err := u.bc.WriteBatch(out, 0)
			if err != nil {
				// One client's unreachable address must not cost the others
				// their answers: skip the packet that failed.
				s.log.Debug("writing DNS answers", "error", err)
				sent = max(sent, 1)
			}
			out = out[min(sent, len(out)):]
		}
		for i := range n {
			in[i].N, in[i].NN = 0, 0
		}
	}
}

// answerPacket is the wire answer to the UDP packet pkt, appended to out,
// or nil when the packet gets none.
func (s *Server) answerPacket(pkt, out, keyBuf []byte) (wire []byte) {
	q, plain := parseFast(pkt, keyBuf)
	if plain {
		if wire := s.fastAnswer(pkt, q, out); wire != nil {
			return wire
		}
	}
	if len(pkt) < headerLen {
		s.metrics.malformed.WithLabelValues("unparsable").Inc()
		return nil
	}
	hdr := mdns.Header{Bits: headerBits(pkt), Qdcount: be16(pkt[4:]), Ancount: be16(pkt[6:]),
		Nscount: be16(pkt[8:]), Arcount: be16(pkt[10:])}
	if mdns.DefaultMsgAcceptFunc(hdr) != mdns.MsgAccept {
		// A reply to a response or a packet of several questions would
		// only help reflect traffic: ignore them, as malformed.
		s.metrics.malformed.WithLabelValues("rejected").Inc()
		return nil
	}
	req := new(mdns.Msg)
	if err := req.Unpack(pkt); err != nil {
		// The header parsed (Unpack set it) but the rest did not: a bare
		// FORMERR header, never larger than the query, as miekg/dns's
		// server answers.
		s.metrics.malformed.WithLabelValues("unparsable").Inc()
		req.SetRcodeFormatError(req)
		req.Zero = false
		req.Question, req.Answer, req.Ns, req.Extra = nil, nil, nil, nil
		b, err := req.PackBuffer(out)
		if err != nil {
			return nil
		}
		return b
	}
	resp, rot := s.reply(req, false, s.cursorPick)
	s.metrics.responses.WithLabelValues(mdns.RcodeToString[resp.Rcode]).Inc()
	b, err := resp.PackBuffer(out)
	if err != nil {
		s.log.Debug("packing DNS answer", "error", err)
		return nil
	}
	if plain && rot != nil {
		s.remember(req, resp.Rcode, rot, q)
	}
	return b
}

func headerBits(pkt []byte) uint16 { return be16(pkt[2:]) }

func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }
