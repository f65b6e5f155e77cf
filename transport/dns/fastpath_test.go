package dns

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/fsm"
)

// tableBinder is a table the test changes under the server, with the
// index discipline of the real one: every change moves the type's index.
type tableBinder struct {
	mu    sync.Mutex
	list  []fsm.Instance
	index uint64
	stale bool
}

func (b *tableBinder) ServicesOf(typ string) ([]fsm.Instance, uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if typ != "echo" {
		return nil, 0
	}
	return append([]fsm.Instance(nil), b.list...), b.index
}

func (b *tableBinder) TypeIndex(string) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.index
}

func (b *tableBinder) ReadAllowed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stale {
		return errors.Join(binder.ErrStale)
	}
	return nil
}

func (b *tableBinder) set(addrs ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.list = nil
	for i, a := range addrs {
		b.list = append(b.list, fsm.Instance{ID: fmt.Sprint("e", i), Type: "echo", Address: a, Port: 80})
	}
	b.index++
}

// ask sends one packet through the UDP path and unpacks the answer.
func ask(t *testing.T, s *Server, q *mdns.Msg) *mdns.Msg {
	t.Helper()
	pkt, err := q.Pack()
	require.NoError(t, err)
	wire := s.answerPacket(pkt, nil, make([]byte, 0, maxKeyLen))
	require.NotNil(t, wire, "an answer to %v", q.Question)
	in := new(mdns.Msg)
	require.NoError(t, in.Unpack(wire))
	return in
}

func question(name string, qtype uint16, id uint16) *mdns.Msg {
	q := new(mdns.Msg)
	q.SetQuestion(name, qtype)
	q.Id = id
	return q
}

func firstA(m *mdns.Msg) string {
	if len(m.Answer) == 0 {
		return ""
	}
	return m.Answer[0].(*mdns.A).A.String()
}

func TestCachedAnswersAreTheSlowPathsAnswers(t *testing.T) {
	b := &tableBinder{}
	b.set("10.0.0.1", "10.0.0.2", "10.0.0.3")
	s, err := New(b, Config{}, nil)
	require.NoError(t, err)

	firsts := map[string]int{}
	for i := range 9 {
		in := ask(t, s, question("echo.service.lieur.", mdns.TypeA, uint16(100+i)))
		assert.Equal(t, uint16(100+i), in.Id, "the query's own id")
		assert.True(t, in.Response && in.Authoritative && in.RecursionDesired)
		require.Len(t, in.Answer, 3)
		firsts[firstA(in)]++
	}
	require.Len(t, s.cache.m, 1, "the first answer was remembered")
	assert.Equal(t, map[string]int{"10.0.0.1": 3, "10.0.0.2": 3, "10.0.0.3": 3}, firsts,
		"rotation goes on through the cache")

	// Byte for byte what the slow path packs for the same rotation.
	q := question("echo.service.lieur.", mdns.TypeA, 7)
	pkt, err := q.Pack()
	require.NoError(t, err)
	got := s.answerPacket(pkt, nil, make([]byte, 0, maxKeyLen))
	in := new(mdns.Msg)
	require.NoError(t, in.Unpack(got))
	start := -1
	for i, rr := range in.Answer {
		if rr.(*mdns.A).A.String() == "10.0.0.1" {
			start = (3 - i) % 3
		}
	}
	slow, _ := s.reply(q, false, func(string, int) int { return start })
	want, err := slow.Pack()
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

func TestCachedAnswerFollowsTheTableAndTheNodesFreshness(t *testing.T) {
	b := &tableBinder{}
	b.set("10.0.0.1")
	s, err := New(b, Config{}, nil)
	require.NoError(t, err)
	for range 2 {
		assert.Equal(t, "10.0.0.1", firstA(ask(t, s, question("echo.service.lieur.", mdns.TypeA, 1))))
	}
	b.set("10.0.0.9")
	assert.Equal(t, "10.0.0.9", firstA(ask(t, s, question("echo.service.lieur.", mdns.TypeA, 1))),
		"a change of the type is seen by the next query")
	b.set()
	in := ask(t, s, question("echo.service.lieur.", mdns.TypeA, 1))
	assert.Equal(t, mdns.RcodeNameError, in.Rcode, "the type is gone")

	b.set("10.0.0.5")
	ask(t, s, question("echo.service.lieur.", mdns.TypeA, 1))
	b.mu.Lock()
	b.stale = true
	b.mu.Unlock()
	in = ask(t, s, question("echo.service.lieur.", mdns.TypeA, 1))
	assert.Equal(t, mdns.RcodeServerFailure, in.Rcode, "a node past its staleness bound answers nothing from memory")
}

func TestCachedAnswerCarriesTheQueriesOwnCaseAndFlags(t *testing.T) {
	b := &tableBinder{}
	b.set("10.0.0.1", "10.0.0.2")
	s, err := New(b, Config{}, nil)
	require.NoError(t, err)
	ask(t, s, question("echo.service.lieur.", mdns.TypeA, 1))

	// A resolver using 0x20 mixed case checks that its spelling comes back.
	q := question("eChO.SeRvIcE.LIEUR.", mdns.TypeA, 2)
	q.RecursionDesired = false
	q.CheckingDisabled = true
	in := ask(t, s, q)
	assert.Equal(t, "eChO.SeRvIcE.LIEUR.", in.Question[0].Name)
	for _, rr := range in.Answer {
		assert.Equal(t, "eChO.SeRvIcE.LIEUR.", rr.Header().Name)
	}
	assert.False(t, in.RecursionDesired)
	assert.True(t, in.CheckingDisabled)

	// An EDNS0 query is a different question: answered with EDNS0.
	q = question("echo.service.lieur.", mdns.TypeA, 3)
	q.SetEdns0(1232, false)
	in = ask(t, s, q)
	require.NotNil(t, in.IsEdns0())
	assert.Len(t, in.Answer, 2)
}

func TestParseFastTakesOnlyPlainQueries(t *testing.T) {
	plain := question("echo.service.lieur.", mdns.TypeA, 1)
	withCookie := question("echo.service.lieur.", mdns.TypeA, 1)
	withCookie.SetEdns0(1232, false)
	withCookie.IsEdns0().Option = append(withCookie.IsEdns0().Option, &mdns.EDNS0_COOKIE{Code: mdns.EDNS0COOKIE, Cookie: "0102030405060708"})
	response := question("echo.service.lieur.", mdns.TypeA, 1)
	response.Response = true
	notify := question("echo.service.lieur.", mdns.TypeA, 1)
	notify.Opcode = mdns.OpcodeNotify
	two := question("echo.service.lieur.", mdns.TypeA, 1)
	two.Question = append(two.Question, two.Question[0])
	for _, tc := range []struct {
		name string
		q    *mdns.Msg
		want bool
	}{
		{"plain", plain, true},
		{"edns option", withCookie, false},
		{"response", response, false},
		{"notify", notify, false},
		{"two questions", two, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt, err := tc.q.Pack()
			require.NoError(t, err)
			_, ok := parseFast(pkt, make([]byte, 0, maxKeyLen))
			assert.Equal(t, tc.want, ok)
			_, ok = parseFast(pkt[:len(pkt)-1], make([]byte, 0, maxKeyLen))
			assert.False(t, ok, "cut short")
		})
	}
}

// A server bound to the wildcard address answers from the address each
// query was sent to: a client's connected socket takes nothing else.
func TestWildcardSocketAnswersFromTheAddressAsked(t *testing.T) {
	b := &tableBinder{}
	b.set("10.0.0.1")
	s, err := New(b, Config{}, nil)
	require.NoError(t, err)
	require.NoError(t, s.Listen("0.0.0.0:0"))
	require.NoError(t, s.Start())
	defer s.Close()
	_, port, err := net.SplitHostPort(s.Addr())
	require.NoError(t, err)
	for _, host := range []string{"127.0.0.1", "127.0.0.2"} {
		c := &mdns.Client{Net: "udp", Timeout: 5 * time.Second}
		for range 2 { // the slow path, then the cache
			in, _, err := c.Exchange(question("echo.service.lieur.", mdns.TypeA, 9), net.JoinHostPort(host, port))
			require.NoError(t, err, "asking %s", host)
			assert.Equal(t, "10.0.0.1", firstA(in))
		}
	}
}
