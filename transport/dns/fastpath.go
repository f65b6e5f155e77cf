package dns

import (
	"encoding/binary"
	"sync"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// The fast path answers the common UDP query (one question, at most a
// bare OPT record) from wire bytes packed once per change of the type,
// one set per rotation start: a query then costs a map read, a version
// check and a copy, not an unpack, a copy of the type and a pack. What it
// serves is byte for byte what the slow path packed for the same question,
// version and rotation; only the id, the RD and CD bits and the case of
// the question name (RFC 5452's 0x20 matching) are the query's own.

const (
	// maxCachedAnswers bounds the cache; past it, it is emptied (answers
	// are rebuilt on demand, nothing else changes).
	maxCachedAnswers = 4096
	// maxCachedRotations: a type with more records than this is answered
	// by the slow path, so a large type costs no n² bytes.
	maxCachedRotations = 64
	headerLen          = 12
	// maxKeyLen: a 255-byte name, type, class, OPT presence, size, ttl.
	maxKeyLen = 255 + 2 + 2 + 1 + 2 + 4
)

// cachedAnswer is one question's answer at one version of its type.
type cachedAnswer struct {
	typ      string
	version  uint64
	rotation [][]byte // packed answer starting at each record
	rcode    prometheus.Counter
}

type answerCache struct {
	mu sync.RWMutex
	m  map[string]*cachedAnswer
}

func (c *answerCache) get(key []byte) *cachedAnswer {
	c.mu.RLock()
	a := c.m[string(key)]
	c.mu.RUnlock()
	return a
}

func (c *answerCache) put(key []byte, a *cachedAnswer) {
	c.mu.Lock()
	if len(c.m) >= maxCachedAnswers {
		clear(c.m)
	}
	c.m[string(key)] = a
	c.mu.Unlock()
}

// fastQuery is what the fast path needs of a query packet.
type fastQuery struct {
	key     []byte // lower-cased question name, type, class, and the OPT's size and flags
	nameEnd int    // the question name is pkt[headerLen:nameEnd]
}

// parseFast reads pkt when it is a plain query: QR clear, opcode QUERY,
// one question with an uncompressed name, nothing else but at most one
// OPT record without options. Anything else is for the slow path.
func parseFast(pkt []byte, keyBuf []byte) (fastQuery, bool) {
	if len(pkt) < headerLen+5 {
		return fastQuery{}, false
	}
	flags := binary.BigEndian.Uint16(pkt[2:])
	const qr, opcodeMask, tc = 1 << 15, 0xf << 11, 1 << 9
	if flags&(qr|opcodeMask|tc) != 0 ||
		binary.BigEndian.Uint16(pkt[4:]) != 1 || binary.BigEndian.Uint16(pkt[6:]) != 0 ||
		binary.BigEndian.Uint16(pkt[8:]) != 0 {
		return fastQuery{}, false
	}
	arcount := binary.BigEndian.Uint16(pkt[10:])
	if arcount > 1 {
		return fastQuery{}, false
	}
	key := keyBuf[:0]
	off := headerLen
	for {
		if off >= len(pkt) {
			return fastQuery{}, false
		}
		l := int(pkt[off])
		if l == 0 {
			off++
			break
		}
		if l > 63 || off+1+l > len(pkt) || off+1+l-headerLen > 254 {
			return fastQuery{}, false // a pointer, a bad length, too long
		}
		key = append(key, byte(l))
		for _, c := range pkt[off+1 : off+1+l] {
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			key = append(key, c)
		}
		off += 1 + l
	}
	nameEnd := off
	if off+4 > len(pkt) {
		return fastQuery{}, false
	}
	key = append(key, 0)
	key = append(key, pkt[off:off+4]...) // type, class
	off += 4
	if arcount == 0 {
		return fastQuery{key: append(key, 0), nameEnd: nameEnd}, off == len(pkt)
	}
	// A bare OPT: root name, type 41, class = size, ttl = extended rcode,
	// version and flags, no options. Version 0 only: other versions want
	// BADVERS, which the slow path decides.
	if off+11 != len(pkt) || pkt[off] != 0 || binary.BigEndian.Uint16(pkt[off+1:]) != mdns.TypeOPT ||
		pkt[off+5] != 0 || pkt[off+6] != 0 || binary.BigEndian.Uint16(pkt[off+9:]) != 0 {
		return fastQuery{}, false
	}
	key = append(key, 1)
	key = append(key, pkt[off+3:off+9]...) // size and ttl (flags)
	return fastQuery{key: key, nameEnd: nameEnd}, true
}

// fastAnswer writes the cached answer to q into out and returns it, or
// returns nil when the cache has none for the type's current version.
func (s *Server) fastAnswer(pkt []byte, q fastQuery, out []byte) []byte {
	a := s.cache.get(q.key)
	if a == nil || s.b.ReadAllowed() != nil || s.b.TypeIndex(a.typ) != a.version {
		return nil
	}
	wire := a.rotation[s.cursorPick(a.typ, len(a.rotation))]
	out = append(out[:0], wire...)
	copy(out[0:2], pkt[0:2]) // id
	const rd, cd = 0x01, 0x10
	out[2] = out[2]&^rd | pkt[2]&rd
	out[3] = out[3]&^cd | pkt[3]&cd
	copy(out[headerLen:q.nameEnd], pkt[headerLen:q.nameEnd])
	a.rcode.Inc()
	return out
}

// remember packs every rotation of the answer rot describes, for the
// fast path. req was parsed as q.
func (s *Server) remember(req *mdns.Msg, rcode int, rot *rotation, q fastQuery) {
	if rot.n > maxCachedRotations {
		return
	}
	a := &cachedAnswer{typ: rot.typ, version: rot.version,
		rotation: make([][]byte, rot.n), rcode: s.metrics.responses.WithLabelValues(mdns.RcodeToString[rcode])}
	for start := range rot.n {
		resp, r := s.reply(req, false, func(string, int) int { return start })
		if r == nil || *r != *rot {
			return // the type changed meanwhile: the next query tries again
		}
		wire, err := resp.Pack()
		if err != nil {
			return
		}
		a.rotation[start] = wire
	}
	s.cache.put(q.key, a)
}
