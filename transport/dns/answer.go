package dns

import (
	"encoding/hex"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/lieur/lieur/fsm"
)

// ServeDNS answers one query (the TCP side; UDP goes through serveUDP,
// which ends in the same reply). It never panics out: a bug answers
// SERVFAIL and is logged, the server keeps serving.
func (s *Server) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	resp, _ := s.reply(req, tcp, s.cursorPick)
	s.metrics.responses.WithLabelValues(mdns.RcodeToString[resp.Rcode]).Inc()
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("writing DNS answer", "error", err)
	}
}

// reply is the answer to req as it goes on the wire: EDNS0 answered with
// EDNS0, and over UDP truncated to what the client can take. rot describes
// the answer when it is one rotation of a type's records (see answer).
func (s *Server) reply(req *mdns.Msg, tcp bool, pick picker) (resp *mdns.Msg, rot *rotation) {
	func() {
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic answering DNS query", "question", req.Question, "panic", p)
				resp, rot = new(mdns.Msg), nil
				resp.SetRcode(req, mdns.RcodeServerFailure)
			}
		}()
		resp, rot = s.answer(req, pick)
	}()
	size := mdns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = max(int(opt.UDPSize()), mdns.MinMsgSize)
		// Answer EDNS0 with EDNS0 (RFC 6891), announcing our own size.
		resp.SetEdns0(advertisedUDPSize, false)
	}
	if tcp {
		size = mdns.MaxMsgSize
	}
	// Drops whole records from the end until the message fits, and sets
	// TC when it dropped any: a UDP client then retries over TCP.
	resp.Truncate(size)
	// Always compressed: names equal to the question's point at it, which
	// is what lets the fast path give each query its own name's case.
	resp.Compress = true
	return resp, rot
}

// picker chooses where the rotation of a type's n records starts.
type picker func(typ string, n int) int

// cursorPick rotates from this binder's cursor for the type, so that a
// client that takes the first record gets round-robin, as /v1/lookup.
func (s *Server) cursorPick(typ string, n int) int {
	return int(s.cursors.next(typ) % uint64(n))
}

// rotation says that an answer is the rotation starting at start of the n
// records of type typ as they were at index version: the same question
// at the same version gives the same answer for the same start.
type rotation struct {
	typ     string
	version uint64
	n       int
}

// answer builds the full (untruncated) answer to req.
func (s *Server) answer(req *mdns.Msg, pick picker) (*mdns.Msg, *rotation) {
	m := new(mdns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = false
	if len(req.Question) != 1 {
		m.Rcode = mdns.RcodeFormatError
		return m, nil
	}
	q := req.Question[0]
	name := strings.ToLower(mdns.Fqdn(q.Name))
	if !mdns.IsSubDomain(s.cfg.Domain, name) || (q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY) {
		// Not a recursive resolver: other zones are not ours to answer.
		m.Rcode = mdns.RcodeRefused
		return m, nil
	}
	if err := s.b.ReadAllowed(); err != nil {
		// The node would refuse a default read (stale, catching up): say
		// so rather than answer from a table that may be far behind; a
		// stub resolver then tries the next server.
		m.Rcode = mdns.RcodeServerFailure
		return m, nil
	}
	labels := mdns.SplitDomainName(strings.TrimSuffix(name, s.cfg.Domain))
	var rot *rotation
	switch {
	case len(labels) == 0:
		s.apex(m, q)
	case labels[len(labels)-1] == "service":
		typ, tag, ok := parseService(labels[:len(labels)-1])
		if !ok {
			s.nxdomain(m)
			return m, nil
		}
		rot = s.service(m, q, typ, tag, pick)
	case labels[len(labels)-1] == "addr" && len(labels) == 2:
		s.addr(m, q, labels[0])
	default:
		s.nxdomain(m)
	}
	return m, rot
}

// parseService reads what precedes "service": "<type>", "<tag>.<type>"
// or "_<type>._tcp" (RFC 2782).
func parseService(l []string) (typ, tag string, ok bool) {
	switch {
	case len(l) == 1:
		return l[0], "", true
	case len(l) == 2 && strings.HasPrefix(l[0], "_") && l[1] == "_tcp":
		return l[0][1:], "", true
	case len(l) == 2 && !strings.HasPrefix(l[0], "_") && !strings.HasPrefix(l[1], "_"):
		return l[1], l[0], true
	}
	return "", "", false
}

// apex answers the zone's own name: its SOA, and NODATA for the rest.
func (s *Server) apex(m *mdns.Msg, q mdns.Question) {
	if q.Qtype == mdns.TypeSOA || q.Qtype == mdns.TypeANY {
		m.Answer = append(m.Answer, s.soa())
		return
	}
	m.Ns = append(m.Ns, s.soa())
}

// service answers a service name from the type's healthy instances,
// rotated from where pick says.
func (s *Server) service(m *mdns.Msg, q mdns.Question, typ, tag string, pick picker) *rotation {
	all, version := s.b.ServicesOf(typ)
	list := healthy(all, tag)
	if len(list) == 0 {
		if len(all) == 0 {
			s.cursors.forget(typ)
		}
		// A type (or tag) with no healthy instance is a name with no
		// record at all, as a lookup of it is a 404.
		s.nxdomain(m)
		return nil
	}
	rot := &rotation{typ: typ, version: version, n: len(list)}
	start := pick(typ, len(list))
	list = slices.Concat(list[start:], list[:start])

	hdr := func(t uint16) mdns.RR_Header {
		return mdns.RR_Header{Name: q.Name, Rrtype: t, Class: mdns.ClassINET, Ttl: s.ttl}
	}
	seen := map[string]bool{}
	switch q.Qtype {
	case mdns.TypeA, mdns.TypeAAAA, mdns.TypeANY:
		for _, inst := range list {
			// Host-name addresses have no A record of ours: SRV names them.
			if rr := s.addrRR(hdr, inst.Address, q.Qtype); rr != nil && !seen[inst.Address] {
				seen[inst.Address] = true
				m.Answer = append(m.Answer, rr)
			}
		}
	case mdns.TypeSRV:
		for _, inst := range list {
			target := s.target(inst.Address)
			m.Answer = append(m.Answer, &mdns.SRV{Hdr: hdr(mdns.TypeSRV),
				Priority: 1, Weight: weight(inst), Port: uint16(inst.Port), Target: target})
			if seen[target] {
				continue
			}
			seen[target] = true
			th := func(t uint16) mdns.RR_Header {
				return mdns.RR_Header{Name: target, Rrtype: t, Class: mdns.ClassINET, Ttl: s.ttl}
			}
			if rr := s.addrRR(th, inst.Address, mdns.TypeANY); rr != nil {
				m.Extra = append(m.Extra, rr)
			}
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, s.soa()) // NODATA
		return nil                   // the SOA's serial moves: not a fixed answer
	}
	return rot
}

// addr answers "<hex>.addr.<domain>", the SRV targets: the name encodes
// the address, so it is answered without the table.
func (s *Server) addr(m *mdns.Msg, q mdns.Question, label string) {
	b, err := hex.DecodeString(label)
	if err != nil || (len(b) != net.IPv4len && len(b) != net.IPv6len) {
		s.nxdomain(m)
		return
	}
	ip := net.IP(b)
	hdr := func(t uint16) mdns.RR_Header {
		return mdns.RR_Header{Name: q.Name, Rrtype: t, Class: mdns.ClassINET, Ttl: s.ttl}
	}
	if rr := s.addrRR(hdr, ip.String(), q.Qtype); rr != nil {
		m.Answer = append(m.Answer, rr)
		return
	}
	m.Ns = append(m.Ns, s.soa())
}

// addrRR is the A or AAAA record of address when it is an IP of the
// family qtype asks for (ANY: either); nil otherwise.
func (s *Server) addrRR(hdr func(uint16) mdns.RR_Header, address string, qtype uint16) mdns.RR {
	ip := net.ParseIP(address)
	switch {
	case ip == nil:
		return nil
	case ip.To4() != nil && (qtype == mdns.TypeA || qtype == mdns.TypeANY):
		return &mdns.A{Hdr: hdr(mdns.TypeA), A: ip.To4()}
	case ip.To4() == nil && (qtype == mdns.TypeAAAA || qtype == mdns.TypeANY):
		return &mdns.AAAA{Hdr: hdr(mdns.TypeAAAA), AAAA: ip}
	}
	return nil
}

// target is an SRV target for address: "<hex of the IP>.addr.<domain>"
// for an IP (a name must stand there, RFC 2782), the host name itself
// otherwise.
func (s *Server) target(address string) string {
	ip := net.ParseIP(address)
	if ip == nil {
		return mdns.Fqdn(address)
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return hex.EncodeToString(ip) + ".addr." + s.cfg.Domain
}

// nxdomain: the name does not exist; the SOA lets resolvers cache that
// for its minimum (RFC 2308).
func (s *Server) nxdomain(m *mdns.Msg) {
	m.Rcode = mdns.RcodeNameError
	m.Ns = append(m.Ns, s.soa())
}

func (s *Server) soa() *mdns.SOA {
	return &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: s.cfg.Domain, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: s.ttl},
		Ns:      "ns." + s.cfg.Domain,
		Mbox:    "hostmaster." + s.cfg.Domain,
		Serial:  uint32(time.Now().Unix()), // no zone transfer: only needs to move forward
		Refresh: 3600, Retry: 600, Expire: 86400,
		Minttl: s.ttl,
	}
}

// healthy is what a lookup would choose from among the instances that
// carry tag (any, when tag is ""): the passing ones, else the warning
// ones, never the critical ones.
func healthy(all []fsm.Instance, tag string) []fsm.Instance {
	var passing, warning []fsm.Instance
	for i := range all {
		inst := &all[i]
		if tag != "" && !slices.ContainsFunc(inst.Tags, func(t string) bool { return strings.EqualFold(t, tag) }) {
			continue
		}
		switch inst.Status() {
		case fsm.StatusPassing:
			passing = append(passing, *inst)
		case fsm.StatusWarning:
			warning = append(warning, *inst)
		}
	}
	if len(passing) > 0 {
		return passing
	}
	return warning
}

// weight is the instance's SRV weight for its status (Consul's Weights;
// 1 when it has none).
func weight(inst fsm.Instance) uint16 {
	if inst.Weights == nil {
		return 1
	}
	if inst.Status() == fsm.StatusWarning {
		return uint16(inst.Weights.Warning)
	}
	return uint16(inst.Weights.Passing)
}

// cursors are the per-type rotation counters. Only types that have
// instances get one, and a type found empty loses its own, so names that
// are only asked about leave nothing behind.
type cursors struct {
	mu sync.Mutex
	m  map[string]*uint64
}

func (c *cursors) next(typ string) uint64 {
	c.mu.Lock()
	p, ok := c.m[typ]
	if !ok {
		if len(c.m) >= maxCursors {
			clear(c.m)
		}
		p = new(uint64)
		c.m[typ] = p
	}
	c.mu.Unlock()
	return atomic.AddUint64(p, 1) - 1
}

func (c *cursors) forget(typ string) {
	c.mu.Lock()
	delete(c.m, typ)
	c.mu.Unlock()
}

// isHostLabel: letters, digits and '-', 1 to 63, no '-' at either end.
func isHostLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for _, c := range []byte(l) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
