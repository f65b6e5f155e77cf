package dns

import (
	"bytes"
	"testing"

	mdns "github.com/miekg/dns"
)

// Whatever arrives over UDP, the answer path does not panic, answers only
// with a message that unpacks and carries the query's id, and its fast
// path (hand-parsed wire bytes) agrees with the slow path (miekg/dns's
// unpack and pack): it takes only packets miekg/dns reads as one
// question, and what it serves is byte for byte one rotation of the slow
// path's answer to the same packet.
func FuzzUDPAnswersAgreeWithTheSlowPath(f *testing.F) {
	seed := func(m *mdns.Msg) {
		pkt, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(pkt)
	}
	seed(question("echo.service.lieur.", mdns.TypeA, 1))
	seed(question("EcHo.SERVICE.lieur.", mdns.TypeA, 2))
	seed(question("_echo._tcp.service.lieur.", mdns.TypeSRV, 3))
	seed(question("echo.service.lieur.", mdns.TypeAAAA, 4))
	seed(question("nope.service.lieur.", mdns.TypeA, 5))
	seed(question("lieur.", mdns.TypeSOA, 6))
	seed(question("example.com.", mdns.TypeA, 7))
	withOPT := question("echo.service.lieur.", mdns.TypeA, 8)
	withOPT.SetEdns0(1232, true)
	seed(withOPT)
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1}) // a pointer loop

	f.Fuzz(func(t *testing.T, pkt []byte) {
		b := &tableBinder{}
		b.set("10.0.0.1", "10.0.0.2", "10.0.0.3")
		s, err := New(b, Config{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		keyBuf := make([]byte, 0, maxKeyLen)
		q, plain := parseFast(pkt, make([]byte, 0, maxKeyLen))
		// The second packet asks the same question under another id, other
		// RD and CD bits and, for a plain query, its name's letters in the
		// other case: the cache serves it, patched with what is its own.
		again := bytes.Clone(pkt)
		if len(again) >= headerLen {
			again[1]++
			again[2] ^= 0x01
			again[3] ^= 0x10
		}
		if plain {
			for i := headerLen; i < q.nameEnd; i++ {
				if c := again[i] | 0x20; c >= 'a' && c <= 'z' {
					again[i] ^= 0x20
				}
			}
		}
		first := s.answerPacket(pkt, nil, keyBuf)
		second := s.answerPacket(again, nil, keyBuf)
		for i, wire := range [][]byte{first, second} {
			if wire == nil {
				continue
			}
			asked := [][]byte{pkt, again}[i]
			in := new(mdns.Msg)
			if err := in.Unpack(wire); err != nil {
				t.Fatalf("the answer does not unpack: %v", err)
			}
			if in.Id != be16(asked) {
				t.Fatalf("answer id %d, query id %d", in.Id, be16(asked))
			}
		}
		if !plain {
			return
		}
		if (first == nil) != (second == nil) {
			t.Fatalf("a plain query answered %v, then %v", first != nil, second != nil)
		}
		req := new(mdns.Msg)
		if err := req.Unpack(again); err != nil || len(req.Question) != 1 {
			t.Fatalf("the fast path takes a packet miekg/dns reads as %d questions, error %v", len(req.Question), err)
		}
		cached := s.cache.get(q.key)
		if cached == nil {
			return
		}
		for start := range cached.rotation {
			resp, _ := s.reply(req, false, func(string, int) int { return start })
			want, err := resp.Pack()
			if err == nil && bytes.Equal(want, second) {
				return
			}
		}
		t.Fatalf("the cached answer is none of the slow path's %d rotations", len(cached.rotation))
	})
}
