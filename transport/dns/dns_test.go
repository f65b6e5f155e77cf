package dns_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/fsm"
	lieurdns "github.com/lieur/lieur/transport/dns"
	"github.com/lieur/lieur/transport/httpapi"
	"github.com/lieur/lieur/transport/raftnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is a real one-node cluster (real Raft, bbolt files and TCP) and
// the DNS server over it on 127.0.0.1, UDP and TCP on one port, as the
// agent runs it.
type fixture struct {
	node *binder.Node
	dns  *lieurdns.Server
	addr string // host:port of the DNS server
	reg  *prometheus.Registry
}

func newFixture(t *testing.T, cfg lieurdns.Config) *fixture {
	t.Helper()
	stream, err := raftnet.Listen("127.0.0.1:0", "")
	require.NoError(t, err)
	peer := httpapi.NewPeerClient()
	node, err := binder.New(binder.Config{
		// Nothing listens on the HTTP address: DNS needs no HTTP.
		ID: "n1", HTTPAddr: "127.0.0.1:1", DataDir: t.TempDir(),
		Peers:  []binder.PeerAddr{{ID: "n1", RaftAddr: stream.Addr().String()}},
		Stream: stream, Peer: peer,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = node.Run(ctx); close(done) }()
	srv, err := lieurdns.New(node, cfg, nil)
	require.NoError(t, err)
	require.NoError(t, srv.Listen("127.0.0.1:0"))
	require.NoError(t, srv.Start())
	reg := prometheus.NewRegistry()
	reg.MustRegister(srv.Collectors()...)
	t.Cleanup(func() {
		require.NoError(t, srv.Close())
		cancel()
		<-done
		_ = node.Close()
		peer.Close()
	})
	// Tags, weights and checks need log format 3, which a single node
	// reaches once it has announced itself.
	eventually(t, "the node to lead, catch up and reach log format 3", func() bool {
		return node.IsLeader() && node.CaughtUp() && node.ClusterID() != "" && node.Status().LogFormat >= 3
	})
	return &fixture{node: node, dns: srv, addr: srv.Addr(), reg: reg}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "timed out waiting for %s", what)
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *fixture) register(t *testing.T, r binder.Registration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := f.node.Register(ctx, r)
	require.NoError(t, err)
}

func withStatus(status string) []fsm.Check {
	return []fsm.Check{{ID: "c-" + status + fmt.Sprint(time.Now().UnixNano()), Kind: fsm.CheckTTL, TTLMillis: 600000, Status: status}}
}

// query asks over net ("udp" or "tcp") with miekg/dns's client.
func (f *fixture) query(t *testing.T, network, name string, qtype uint16, edns uint16) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &mdns.Client{Net: network, Timeout: 5 * time.Second}
	in, _, err := c.Exchange(m, f.addr)
	require.NoError(t, err, "%s %s over %s", name, mdns.TypeToString[qtype], network)
	return in
}

// resolver is Go's own resolver, sent to the server whatever it dials.
func (f *fixture) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, f.addr)
	}}
}

func aRecords(m *mdns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

func malformed(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "lieur_dns_malformed_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestAAnswersHealthyInstancesToBothClients(t *testing.T) {
	f := newFixture(t, lieurdns.Config{})
	f.register(t, binder.Registration{ID: "e1", Type: "echo", Address: "127.0.0.1", Port: 9001})
	f.register(t, binder.Registration{ID: "e2", Type: "echo", Address: "127.0.0.2", Port: 9002})
	f.register(t, binder.Registration{ID: "e3", Type: "echo", Address: "127.0.0.3", Port: 9003, Checks: withStatus(fsm.StatusCritical)})
	f.register(t, binder.Registration{ID: "e6", Type: "echo", Address: "::1", Port: 9006})

	in := f.query(t, "udp", "ECHO.service.lieur.", mdns.TypeA, 0)
	assert.Equal(t, mdns.RcodeSuccess, in.Rcode)
	assert.True(t, in.Authoritative)
	got := aRecords(in)
	sort.Strings(got)
	assert.Equal(t, []string{"127.0.0.1", "127.0.0.2"}, got, "the critical one is left out, case does not matter")
	for _, rr := range in.Answer {
		assert.Equal(t, uint32(0), rr.Header().Ttl, "TTL 0 by default")
	}

	addrs, err := f.resolver().LookupHost(ctx5(t), "echo.service.lieur.")
	require.NoError(t, err)
	sort.Strings(addrs)
	assert.Equal(t, []string{"127.0.0.1", "127.0.0.2", "::1"}, addrs, "Go's resolver asks A and AAAA")
}

func TestOnlyWarningInstancesAreServedWhenNoneIsPassingAndNeverCritical(t *testing.T) {
	f := newFixture(t, lieurdns.Config{})
	f.register(t, binder.Registration{ID: "w1", Type: "web", Address: "10.0.0.1", Port: 80, Checks: withStatus(fsm.StatusWarning)})
	f.register(t, binder.Registration{ID: "c1", Type: "web", Address: "10.0.0.2", Port: 80, Checks: withStatus(fsm.StatusCritical)})
	assert.Equal(t, []string{"10.0.0.1"}, aRecords(f.query(t, "udp", "web.service.lieur.", mdns.TypeA, 0)))

	f.register(t, binder.Registration{ID: "p1", Type: "web", Address: "10.0.0.3", Port: 80})
	assert.Equal(t, []string{"10.0.0.3"}, aRecords(f.query(t, "udp", "web.service.lieur.", mdns.TypeA, 0)),
		"a passing one: warning ones are left out, as lookups do")

	f.register(t, binder.Registration{ID: "c2", Type: "down", Address: "10.0.0.4", Port: 80, Checks: withStatus(fsm.StatusCritical)})
	in := f.query(t, "udp", "down.service.lieur.", mdns.TypeA, 0)
	assert.Equal(t, mdns.RcodeNameError, in.Rcode, "only critical instances: no name, as a lookup's 404")
}

func TestSRVGivesWeightsPortsAndTargetsWithTheirAddresses(t *testing.T) {
	f := newFixture(t, lieurdns.Config{TTL: 30 * time.Second})
	f.register(t, binder.Registration{ID: "e1", Type: "echo", Address: "127.0.0.1", Port: 9001, Weights: &fsm.Weights{Passing: 7, Warning: 1}})
	f.register(t, binder.Registration{ID: "e2", Type: "echo", Address: "fd00::2", Port: 9002})
	f.register(t, binder.Registration{ID: "e3", Type: "echo", Address: "db.example.net", Port: 9003})

	for _, name := range []string{"_echo._tcp.service.lieur.", "echo.service.lieur."} {
		in := f.query(t, "udp", name, mdns.TypeSRV, 0)
		require.Equal(t, mdns.RcodeSuccess, in.Rcode, name)
		require.Len(t, in.Answer, 3, name)
		extra := map[string]string{}
		for _, rr := range in.Extra {
			switch r := rr.(type) {
			case *mdns.A:
				extra[r.Hdr.Name] = r.A.String()
			case *mdns.AAAA:
				extra[r.Hdr.Name] = r.AAAA.String()
			}
		}
		byPort := map[uint16]*mdns.SRV{}
		for _, rr := range in.Answer {
			srv := rr.(*mdns.SRV)
			assert.Equal(t, uint32(30), srv.Hdr.Ttl)
			assert.Equal(t, uint16(1), srv.Priority)
			byPort[srv.Port] = srv
		}
		assert.Equal(t, uint16(7), byPort[9001].Weight, "the passing weight")
		assert.Equal(t, uint16(1), byPort[9002].Weight, "no weights: 1")
		assert.Equal(t, "7f000001.addr.lieur.", byPort[9001].Target)
		assert.Equal(t, "127.0.0.1", extra[byPort[9001].Target], "the target's A is in the additional section")
		assert.Equal(t, "fd00::2", extra[byPort[9002].Target], "the target's AAAA is in the additional section")
		assert.Equal(t, "db.example.net.", byPort[9003].Target, "a host name is its own target")
	}

	r := f.resolver()
	cname, srvs, err := r.LookupSRV(ctx5(t), "echo", "tcp", "service.lieur.")
	require.NoError(t, err)
	assert.Equal(t, "_echo._tcp.service.lieur.", cname)
	require.Len(t, srvs, 3)
	addrs, err := r.LookupHost(ctx5(t), "7f000001.addr.lieur.")
	require.NoError(t, err, "a target resolves on its own too")
	assert.Equal(t, []string{"127.0.0.1"}, addrs)
}

func TestFirstAnswerRotatesAcrossQueries(t *testing.T) {
	f := newFixture(t, lieurdns.Config{})
	for i := 1; i <= 3; i++ {
		f.register(t, binder.Registration{ID: fmt.Sprintf("e%d", i), Type: "echo", Address: fmt.Sprintf("10.1.0.%d", i), Port: 80 + i})
	}
	firsts := map[string]int{}
	for range 6 {
		got := aRecords(f.query(t, "udp", "echo.service.lieur.", mdns.TypeA, 0))
		require.Len(t, got, 3)
		firsts[got[0]]++
	}
	assert.Equal(t, map[string]int{"10.1.0.1": 2, "10.1.0.2": 2, "10.1.0.3": 2}, firsts, "round-robin on the first record")

	// SRV rotates too, on the same cursor.
	srvFirsts := map[uint16]int{}
	for range 3 {
		in := f.query(t, "tcp", "_echo._tcp.service.lieur.", mdns.TypeSRV, 0)
		require.Len(t, in.Answer, 3)
		srvFirsts[in.Answer[0].(*mdns.SRV).Port]++
	}
	assert.Equal(t, map[uint16]int{81: 1, 82: 1, 83: 1}, srvFirsts)
}

func TestTagFiltersInstancesWithoutCase(t *testing.T) {
	f := newFixture(t, lieurdns.Config{})
	f.register(t, binder.Registration{ID: "p", Type: "db", Address: "10.2.0.1", Port: 5432, Tags: []string{"Primary"}})
	f.register(t, binder.Registration{ID: "r", Type: "db", Address: "10.2.0.2", Port: 5432, Tags: []string{"replica"}})
	assert.Equal(t, []string{"10.2.0.1"}, aRecords(f.query(t, "udp", "primary.db.service.lieur.", mdns.TypeA, 0)))
	assert.Equal(t, []string{"10.2.0.2"}, aRecords(f.query(t, "udp", "REPLICA.db.service.lieur.", mdns.TypeA, 0)))
	in := f.query(t, "udp", "primary.db.service.lieur.", mdns.TypeSRV, 0)
	require.Len(t, in.Answer, 1)
	assert.Equal(t, mdns.RcodeNameError, f.query(t, "udp", "nosuch.db.service.lieur.", mdns.TypeA, 0).Rcode)
}

func TestUnknownTypeIsNXDOMAINWithSOA(t *testing.T) {
	f := newFixture(t, lieurdns.Config{Domain: "Disco.Example", TTL: 5 * time.Second})
	in := f.query(t, "udp", "nosuch.service.disco.example.", mdns.TypeA, 0)
	assert.Equal(t, mdns.RcodeNameError, in.Rcode)
	assert.Empty(t, in.Answer)
	require.Len(t, in.Ns, 1)
	soa, ok := in.Ns[0].(*mdns.SOA)
	require.True(t, ok, "an SOA in the authority section: %v", in.Ns[0])
	assert.Equal(t, "disco.example.", soa.Hdr.Name)
	assert.Equal(t, uint32(5), soa.Minttl, "negative caching lasts the TTL")

	_, err := f.resolver().LookupHost(ctx5(t), "nosuch.service.disco.example.")
	var de *net.DNSError
	require.True(t, errors.As(err, &de), "a DNS error: %v", err)
	assert.True(t, de.IsNotFound, "Go's resolver sees no such host: %v", err)
}

func TestKnownTypeWithoutThatRecordIsNODATA(t *testing.T) {
	f := newFixture(t, lieurdns.Config{})
	f.register(t, binder.Registration{ID: "e1", Type: "echo", Address: "127.0.0.1", Port: 9001})
	for _, qt := range []uint16{mdns.TypeAAAA, mdns.TypeTXT} {
		in := f.query(t, "udp", "echo.service.lieur.", qt, 0)
		assert.Equal(t, mdns.RcodeSuccess, in.Rcode, mdns.TypeToString[qt])
		assert.Empty(t, in.Answer)
		require.Len(t, in.Ns, 1)
		assert.IsType(t, &mdns.SOA{}, in.Ns[0])
	}
	ips, err := f.resolver().LookupIP(ctx5(t), "ip6", "echo.service.lieur.")
	assert.Empty(t, ips)
	var de *net.DNSError
	require.True(t, errors.As(err, &de), "a DNS error: %v", err)
	assert.True(t, de.IsNotFound, "no AAAA: %v", err)
}

func TestNameOutsideTheDomainIsRefused(t *testing.T) {
	f := newFixture(t, lieurdns.Config{})
	for _, name := range []string{"example.com.", "lieur.example.", "."} {
		in := f.query(t, "udp", name, mdns.TypeA, 0)
		assert.Equal(t, mdns.RcodeRefused, in.Rcode, name)
		assert.Empty(t, in.Answer, name)
	}
}

func TestUDPTruncatesAndTCPGivesTheWholeSet(t *testing.T) {
	f := newFixture(t, lieurdns.Config{})
	const n = 100
	for i := range n {
		f.register(t, binder.Registration{ID: fmt.Sprintf("e%03d", i), Type: "big", Address: fmt.Sprintf("10.3.%d.%d", i/250, i%250+1), Port: 80})
	}
	udp := f.query(t, "udp", "big.service.lieur.", mdns.TypeA, 0)
	assert.True(t, udp.Truncated, "TC set")
	assert.Less(t, len(udp.Answer), n)
	assert.NotEmpty(t, udp.Answer, "as many whole records as fit")
	udp.Compress = true // as it came on the wire
	assert.LessOrEqual(t, udp.Len(), mdns.MinMsgSize)

	small := f.query(t, "udp", "big.service.lieur.", mdns.TypeA, 1232)
	assert.True(t, small.Truncated, "1232 bytes cannot hold 100 A records either")
	assert.Greater(t, len(small.Answer), len(udp.Answer), "the EDNS0 size is used")
	require.NotNil(t, small.IsEdns0(), "EDNS0 answered with EDNS0")

	large := f.query(t, "udp", "big.service.lieur.", mdns.TypeA, 4096)
	assert.False(t, large.Truncated)
	assert.Len(t, large.Answer, n)

	tcp := f.query(t, "tcp", "big.service.lieur.", mdns.TypeA, 0)
	assert.False(t, tcp.Truncated)
	assert.Len(t, tcp.Answer, n)

	// Go's resolver asks over UDP (EDNS0 1232), sees TC and asks again
	// over TCP: it ends up with every address.
	addrs, err := f.resolver().LookupHost(ctx5(t), "big.service.lieur.")
	require.NoError(t, err)
	assert.Len(t, addrs, n)

	srvTCP := f.query(t, "tcp", "_big._tcp.service.lieur.", mdns.TypeSRV, 0)
	assert.Len(t, srvTCP.Answer, n)
	assert.Len(t, srvTCP.Extra, n, "every target's address")
}

func TestMalformedPacketsAreCountedAndTheServerKeepsAnswering(t *testing.T) {
	f := newFixture(t, lieurdns.Config{})
	f.register(t, binder.Registration{ID: "e1", Type: "echo", Address: "127.0.0.1", Port: 9001})
	before := malformed(t, f.reg)

	conn, err := net.Dial("udp", f.addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte{0x12, 0x34, 0x01}) // shorter than a header
	require.NoError(t, err)
	// A header announcing a question that is not there.
	_, err = conn.Write([]byte{0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x05, 'e', 'c'})
	require.NoError(t, err)
	// A response sent to the server: rejected, never answered.
	resp := new(mdns.Msg)
	resp.SetQuestion("echo.service.lieur.", mdns.TypeA)
	resp.Response = true
	b, err := resp.Pack()
	require.NoError(t, err)
	_, err = conn.Write(b)
	require.NoError(t, err)

	tc, err := net.Dial("tcp", f.addr)
	require.NoError(t, err)
	_, err = tc.Write([]byte{0x00, 0x04, 0xde, 0xad, 0xbe, 0xef}) // a 4-byte "message"
	require.NoError(t, err)
	tc.Close()

	eventually(t, "the malformed packets to be counted", func() bool { return malformed(t, f.reg)-before >= 4 })
	assert.Equal(t, []string{"127.0.0.1"}, aRecords(f.query(t, "udp", "echo.service.lieur.", mdns.TypeA, 0)))
	assert.Equal(t, []string{"127.0.0.1"}, aRecords(f.query(t, "tcp", "echo.service.lieur.", mdns.TypeA, 0)))
}

func TestDigQueriesTheServer(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skipf("dig is not on PATH (Debian: apt-get install dnsutils, as .ci/run does): %v", err)
	}
	f := newFixture(t, lieurdns.Config{})
	f.register(t, binder.Registration{ID: "e1", Type: "echo", Address: "127.0.0.1", Port: 9001})
	host, port, err := net.SplitHostPort(f.addr)
	require.NoError(t, err)
	out, err := exec.CommandContext(ctx5(t), dig, "@"+host, "-p", port, "echo.service.lieur.", "A", "+short", "+time=2", "+tries=1").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "127.0.0.1", strings.TrimSpace(string(out)))
}
