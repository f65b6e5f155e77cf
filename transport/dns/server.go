package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/fsm"
)

// Binder is what the DNS server needs of a node. *binder.Node implements
// it. Every call reads the node's memory only.
type Binder interface {
	// ServicesOf is the type's instances and the index of their last
	// change; TypeIndex that index alone, which moves whenever anything
	// the answers show (an instance, its health) changes.
	ServicesOf(typ string) ([]fsm.Instance, uint64)
	TypeIndex(typ string) uint64
	ReadAllowed() error
}

var _ Binder = (*binder.Node)(nil)

// Defaults of Config.
const (
	DefaultDomain = "lieur."
	// MaxTTL bounds --dns-ttl: a day is already far longer than an
	// instance's answer should be trusted.
	MaxTTL = 24 * time.Hour
	// advertisedUDPSize is the EDNS0 buffer size this server announces.
	advertisedUDPSize = 4096
	// maxCursors bounds the per-type rotation counters; past it they are
	// all dropped (rotation restarts, nothing else changes).
	maxCursors = 4096
)

// Config is how the server answers.
type Config struct {
	// Domain is the zone served (default "lieur."); any case, with or
	// without the final dot.
	Domain string
	// TTL of every record, and the SOA minimum (negative caching); whole
	// seconds, 0 by default so that resolvers ask again every time, as a
	// lookup would.
	TTL time.Duration
}

// NormalizeConfig checks cfg and returns it with defaults applied and the
// domain lower-cased and fully qualified.
func NormalizeConfig(cfg Config) (Config, error) {
	if cfg.Domain == "" {
		cfg.Domain = DefaultDomain
	}
	cfg.Domain = strings.ToLower(mdns.Fqdn(cfg.Domain))
	if _, ok := mdns.IsDomainName(cfg.Domain); !ok || cfg.Domain == "." {
		return cfg, fmt.Errorf("domain %q is not a domain name", cfg.Domain)
	}
	for _, l := range mdns.SplitDomainName(cfg.Domain) {
		if !isHostLabel(l) {
			return cfg, fmt.Errorf("domain %q: label %q must be letters, digits and '-'", cfg.Domain, l)
		}
	}
	if cfg.TTL < 0 || cfg.TTL > MaxTTL || cfg.TTL%time.Second != 0 {
		return cfg, fmt.Errorf("ttl %s: want whole seconds from 0 to %s", cfg.TTL, MaxTTL)
	}
	return cfg, nil
}

// Server serves one Binder over DNS, on UDP and TCP at one address.
type Server struct {
	b       Binder
	cfg     Config
	ttl     uint32
	log     hclog.Logger
	cursors cursors
	metrics metrics

	cache answerCache

	udpConns []*net.UDPConn // one per core, sharing the port
	tcpLn    net.Listener
	started  bool
	tcp      *mdns.Server
	errc     chan error
	wg       sync.WaitGroup
	close    sync.Once
	closing  chan struct{} // closed when Close begins: ends a read back-off

	// readErr, when tests set it before Start, fails batch reads the way
	// the kernel might. One that fails for ever keeps its loop from
	// reaching the closed socket, so Close would not end it.
	readErr func() error
}

// New returns a server for b; it binds nothing until Listen.
func New(b Binder, cfg Config, logger hclog.Logger) (*Server, error) {
	cfg, err := NormalizeConfig(cfg)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Server{b: b, cfg: cfg, ttl: uint32(cfg.TTL / time.Second), log: logger,
		cursors: cursors{m: map[string]*uint64{}}, cache: answerCache{m: map[string]*cachedAnswer{}},
		metrics: newMetrics(), errc: make(chan error, 1+udpSockets()), closing: make(chan struct{})}, nil
}

// Collectors are the server's metrics, for the agent's registry.
func (s *Server) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.metrics.malformed, s.metrics.responses, s.metrics.readErrors}
}

// Listen binds UDP and TCP on addr, on the same port: with port 0 it
// picks a port free for both, so that one host:port serves both as every
// resolver expects. UDP gets one socket per core on that port.
func (s *Server) Listen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	lc := reusePortConfig()
	var lastErr error
	for attempt := 0; attempt < 16; attempt++ {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			return fmt.Errorf("dns udp: %w", err)
		}
		_, got, _ := net.SplitHostPort(pc.LocalAddr().String())
		ln, err := net.Listen("tcp", net.JoinHostPort(host, got))
		if err != nil {
			pc.Close()
			lastErr = err
			if port != "0" {
				break // a fixed port: retrying cannot help
			}
			continue
		}
		conns := []*net.UDPConn{pc.(*net.UDPConn)}
		for len(conns) < udpSockets() {
			more, err := lc.ListenPacket(context.Background(), "udp", pc.LocalAddr().String())
			if err != nil {
				break // one socket still serves, on one core
			}
			conns = append(conns, more.(*net.UDPConn))
		}
		s.udpConns, s.tcpLn = conns, ln
		return nil
	}
	return fmt.Errorf("dns tcp: %w", lastErr)
}

// Addr is the bound address (UDP and TCP share it).
func (s *Server) Addr() string { return s.udpConns[0].LocalAddr().String() }

// Start serves on the bound sockets and returns once all listen; errors
// of a serve loop that end it before Close arrive on Err.
func (s *Server) Start() error {
	if s.udpConns == nil {
		return errors.New("dns: Start before Listen")
	}
	sockets := make([]*udpSocket, len(s.udpConns))
	for i, c := range s.udpConns {
		u, err := newUDPSocket(c)
		if err != nil {
			return fmt.Errorf("dns udp: %w", err)
		}
		sockets[i] = u
	}
	s.tcp = s.newServer()
	s.tcp.Listener = s.tcpLn
	// Shutdown refuses a server that has not started, so Start waits for
	// it: after it, Close always stops it.
	started := make(chan struct{})
	ended := make(chan struct{})
	s.tcp.NotifyStartedFunc = func() { close(started) }
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(ended)
		if err := s.tcp.ActivateAndServe(); err != nil {
			s.errc <- fmt.Errorf("dns serve: %w", err)
		}
	}()
	select {
	case <-started:
	case <-ended:
		select {
		case err := <-s.errc:
			return err
		default:
			return errors.New("dns: server ended before it started")
		}
	}
	s.started = true
	for _, u := range sockets {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.serveUDP(u); err != nil {
				s.errc <- fmt.Errorf("dns serve udp: %w", err)
			}
		}()
	}
	s.log.Info("serving DNS", "addr", s.Addr(), "domain", s.cfg.Domain, "ttl", s.cfg.TTL, "udp_sockets", len(sockets))
	return nil
}

func (s *Server) newServer() *mdns.Server {
	return &mdns.Server{
		Handler: s,
		// A reply to a response or a packet of several questions would
		// only help reflect traffic: ignore them, as malformed.
		MsgAcceptFunc: func(dh mdns.Header) mdns.MsgAcceptAction {
			act := mdns.DefaultMsgAcceptFunc(dh)
			if act != mdns.MsgAccept {
				s.metrics.malformed.WithLabelValues("rejected").Inc()
				return mdns.MsgIgnore
			}
			return act
		},
		// A packet whose header parses but whose body does not gets a bare
		// FORMERR header from miekg/dns (never larger than the query); one
		// whose header does not parse gets nothing. Both are counted.
		MsgInvalidFunc: func([]byte, error) {
			s.metrics.malformed.WithLabelValues("unparsable").Inc()
		},
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
		IdleTimeout:  func() time.Duration { return 8 * time.Second },
	}
}

// Err reports a serve loop that stopped on its own.
func (s *Server) Err() <-chan error { return s.errc }

// Close stops serving and waits for the serve loops to end.
func (s *Server) Close() error {
	s.close.Do(func() {
		close(s.closing)
		if s.tcp != nil && s.started {
			_ = s.tcp.Shutdown() // closes the listener
		} else if s.tcpLn != nil {
			s.tcpLn.Close()
		}
		for _, c := range s.udpConns {
			c.Close() // ends its serve loop
		}
		s.wg.Wait()
	})
	return nil
}
