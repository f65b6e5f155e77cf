package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/fsm"
	"github.com/lieur/lieur/transport/consul"
	dnsfront "github.com/lieur/lieur/transport/dns"
	"github.com/lieur/lieur/transport/httpapi"
	"github.com/lieur/lieur/transport/promsd"
	"github.com/lieur/lieur/transport/raftnet"
	"github.com/lieur/lieur/transport/tlsutil"
	"github.com/lieur/lieur/transport/ui"
)

// AgentConfig is everything `lieur agent` takes. Validate applies defaults.
type AgentConfig struct {
	ID       string
	RaftAddr string // host:port to bind and advertise for Raft
	HTTPAddr string // host:port to serve the API on and advertise
	DataDir  string
	// Peers is "id=raftaddr,..." (every initial voter); Join a node's URL.
	Peers string
	Join  string
	// RecoverPeers names a peers file: rewrite the Raft configuration of
	// this node, which must have state, to the servers it lists before
	// starting (binder/recover.go). Peers and Join are then not needed.
	RecoverPeers string
	LogLevel     string
	// Pprof serves the runtime profiles at /debug/pprof/ (opt-in).
	Pprof bool
	// TokenFile, when set, requires tokens (see httpapi.ParseTokens);
	// AuthReads makes reads need one too.
	TokenFile string
	AuthReads bool
	// AllowOrigins are the web origins (scheme://host[:port], or "*") whose
	// pages may call the API from a browser; none by default, so no CORS
	// header is ever sent.
	AllowOrigins []string
	// TLS: the HTTP API over TLS, Raft over mutual TLS (all three files).
	TLS tlsutil.Files
	// Datacenter is the binder's datacenter in the Consul views (default
	// dc1): what ?dc= must name and what nodes and services carry.
	Datacenter string
	// DNSAddr, when set, serves DNS on this host:port over UDP and TCP
	// (see docs/dns.md); DNSDomain is the zone (default lieur.) and DNSTTL
	// every record's TTL (default 0: resolvers ask every time).
	DNSAddr   string
	DNSDomain string
	DNSTTL    time.Duration
	// UI serves the web UI at /ui/ (--ui, on by default; see docs/ui.md).
	UI bool
	// Node holds the Raft and verification tuning; ID, DataDir, Peers,
	// Join, Stream, Peer and Logger are filled in from the fields above.
	Node binder.Config
}

// Validate checks the configuration and fills in the node's.
func (c *AgentConfig) Validate() error {
	if c.ID == "" || c.RaftAddr == "" || c.HTTPAddr == "" || c.DataDir == "" {
		return errors.New("--id, --raft-addr, --http-addr and --data-dir are required")
	}
	for flag, addr := range map[string]string{"--http-addr": c.HTTPAddr, "--raft-addr": c.RaftAddr} {
		// Both are advertised to the other binders: a bare ":port" names
		// no host they could reach.
		if host, port, err := net.SplitHostPort(addr); err != nil || host == "" || port == "" {
			return fmt.Errorf("%s %q: want host:port, with the host the other binders reach this one at", flag, addr)
		}
	}
	if err := fsm.ValidateID(c.ID); err != nil {
		// The id goes into the log (node-meta/v1), whose rules it must meet.
		return fmt.Errorf("--id: %w", err)
	}
	switch {
	case c.RecoverPeers != "" && c.Peers != "" && c.Join != "":
		return errors.New("--peers and --join are exclusive")
	case c.RecoverPeers == "" && (c.Peers == "") == (c.Join == ""):
		return errors.New("exactly one of --peers and --join is required")
	}
	if c.RecoverPeers != "" {
		rec, err := binder.ReadRecoveryFile(c.RecoverPeers)
		if err != nil {
			return fmt.Errorf("--recover-peers: %w", err)
		}
		// binder.New checks this too, but only once the ports are bound.
		if !slices.ContainsFunc(rec.Servers, func(s binder.RecoveryServer) bool { return s.ID == c.ID }) {
			return fmt.Errorf("--recover-peers %s: this node (--id %s) is not among them", c.RecoverPeers, c.ID)
		}
		c.Node.Recovery = rec
	}
	if c.Node.Nonvoter && c.Join == "" {
		return errors.New("--nonvoter needs --join: the servers --peers bootstraps are voters")
	}
	if d := c.Node.CleanupDeadAfter; d != 0 && d < binder.MinCleanupDeadAfter {
		return fmt.Errorf("--cleanup-dead-after %s: want 0 (off) or at least %s", d, binder.MinCleanupDeadAfter)
	}
	for _, o := range c.AllowOrigins {
		if err := validOrigin(o); err != nil {
			return fmt.Errorf("--allow-origin %q: %w", o, err)
		}
	}
	if c.Peers != "" {
		peers, err := parsePeers(c.Peers)
		if err != nil {
			return err
		}
		// binder.New would refuse this too, but only after the ports are
		// bound; here the mistake is reported in the flag's own terms.
		if !slices.ContainsFunc(peers, func(p binder.PeerAddr) bool { return p.ID == c.ID }) {
			return fmt.Errorf("--peers: this node (--id %s) is not among them", c.ID)
		}
		c.Node.Peers = peers
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.Datacenter == "" {
		c.Datacenter = consul.DefaultDatacenter
	}
	if err := consul.ValidateDatacenter(c.Datacenter); err != nil {
		return fmt.Errorf("--datacenter: %w", err)
	}
	if err := c.TLS.Validate(); err != nil {
		return err
	}
	if c.DNSAddr != "" {
		// The host may be empty (every interface): DNS is not advertised.
		if _, port, err := net.SplitHostPort(c.DNSAddr); err != nil || port == "" {
			return fmt.Errorf("--dns-addr %q: want host:port", c.DNSAddr)
		}
	}
	dnsCfg, err := dnsfront.NormalizeConfig(dnsfront.Config{Domain: c.DNSDomain, TTL: c.DNSTTL})
	if err != nil {
		return fmt.Errorf("--dns-domain/--dns-ttl: %w", err)
	}
	c.DNSDomain, c.DNSTTL = dnsCfg.Domain, dnsCfg.TTL
	if hclog.LevelFromString(c.LogLevel) == hclog.NoLevel {
		return fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", c.LogLevel)
	}
	c.Node.ID, c.Node.DataDir, c.Node.Join, c.Node.HTTPAddr = c.ID, c.DataDir, c.Join, c.HTTPAddr
	return nil
}

// parsePeers reads "id=host:port,..." and refuses an id or a Raft address
// listed twice: Raft cannot bootstrap either.
// validOrigin accepts "*" or an origin as browsers send it: scheme and
// host (and port), nothing else.
func validOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return errors.New("want * or scheme://host[:port], as in https://ui.example:8443")
	}
	return nil
}

func parsePeers(s string) ([]binder.PeerAddr, error) {
	var out []binder.PeerAddr
	ids := map[string]bool{}
	addrs := map[string]string{} // raft address -> id
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--peers: %q is not id=host:port", part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("--peers: %q: %v", part, err)
		}
		if ids[id] {
			return nil, fmt.Errorf("--peers: id %q listed twice", id)
		}
		ids[id] = true
		if other, ok := addrs[addr]; ok {
			return nil, fmt.Errorf("--peers: %q and %q share raft address %s", other, id, addr)
		}
		addrs[addr] = id
		out = append(out, binder.PeerAddr{ID: id, RaftAddr: addr})
	}
	return out, nil
}

// Agent is one running binder process: a binder node and its HTTP API.
type Agent struct {
	cfg   AgentConfig
	log   hclog.Logger
	node  *binder.Node
	peer  *httpapi.PeerClient
	http  *http.Server
	ln    net.Listener
	dns   *dnsfront.Server // nil without --dns-addr
	auth  *httpapi.Auth    // nil without --token-file
	tls   *tlsutil.Configs // nil without TLS
	close sync.Once
}

// NewAgent binds the agent's ports and starts its Raft member.
func NewAgent(cfg AgentConfig, logger hclog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var tlsCfg *tlsutil.Configs
	if cfg.TLS.Enabled() {
		c, err := tlsutil.Load(cfg.TLS)
		if err != nil {
			return nil, err
		}
		tlsCfg = c
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("http listen: %w", err)
	}
	stream, err := raftnet.Listen(cfg.RaftAddr, "")
	if err != nil {
		ln.Close()
		return nil, err
	}
	peer := httpapi.NewPeerClient()
	if tlsCfg != nil {
		stream.UseTLS(tlsCfg.RaftServer, tlsCfg.RaftClient)
		peer.UseTLS(tlsCfg.Client)
		ln = tls.NewListener(ln, tlsCfg.HTTPServer)
	}
	var auth *httpapi.Auth
	if cfg.TokenFile != "" {
		f, err := os.Open(cfg.TokenFile)
		if err != nil {
			ln.Close()
			stream.Close()
			return nil, fmt.Errorf("token file: %w", err)
		}
		auth, err = httpapi.ParseTokens(f)
		f.Close()
		if err != nil {
			ln.Close()
			stream.Close()
			return nil, err
		}
		auth.AuthReads = cfg.AuthReads
		peer.SetToken(auth.ClusterToken())
	}
	cfg.Node.Stream, cfg.Node.Peer, cfg.Node.Logger = stream, peer, logger
	node, err := binder.New(cfg.Node)
	if err != nil {
		ln.Close()
		stream.Close()
		return nil, err
	}
	a := &Agent{cfg: cfg, log: logger, node: node, peer: peer, ln: ln, auth: auth, tls: tlsCfg}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(node.Collectors()...)
	if cfg.DNSAddr != "" {
		dnsSrv, err := dnsfront.New(node, dnsfront.Config{Domain: cfg.DNSDomain, TTL: cfg.DNSTTL}, logger.Named("dns"))
		if err == nil {
			err = dnsSrv.Listen(cfg.DNSAddr)
		}
		if err != nil {
			node.Close()
			ln.Close()
			return nil, err
		}
		a.dns = dnsSrv
		reg.MustRegister(dnsSrv.Collectors()...)
	}
	opts := []httpapi.Option{httpapi.WithAuth(auth), httpapi.WithMetrics(reg)}
	if len(cfg.AllowOrigins) > 0 {
		opts = append(opts, httpapi.WithAllowedOrigins(cfg.AllowOrigins))
	}
	if cfg.Pprof {
		opts = append(opts, httpapi.WithPprof())
	}
	consulOpts := []consul.Option{consul.WithAuth(auth)}
	if len(cfg.AllowOrigins) > 0 {
		consulOpts = append(consulOpts, consul.WithAllowedOrigins(cfg.AllowOrigins))
	}
	consulAPI, err := consul.NewServer(node, consul.Config{Datacenter: cfg.Datacenter}, logger.Named("consul"), consulOpts...)
	if err != nil {
		if a.dns != nil {
			a.dns.Close()
		}
		node.Close()
		ln.Close()
		return nil, err
	}
	var handler http.Handler = mountPromSD(promsd.NewServer(node, logger.Named("promsd"), promsd.WithAuth(auth)),
		mountConsul(consulAPI, httpapi.NewServer(node, logger.Named("http"), opts...)))
	if cfg.UI {
		handler = mountUI(ui.New(), handler)
	}
	a.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Long enough for the longest long poll, bounded all the same:
		// Consul's blocking queries wait up to 10 min and a jitter.
		WriteTimeout: max(httpapi.MaxWait, consul.MaxBlockingTime) + 30*time.Second,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     logger.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	return a, nil
}

// mountConsul serves Consul's API paths (/v1/agent/, /v1/catalog/,
// /v1/health/, /v1/status/... and the Consul endpoints lieur answers as
// unsupported) with the Consul views, and everything else with lieur's
// own API, on one port: CONSUL_HTTP_ADDR=<binder> is all a Consul client
// needs.
func mountConsul(consulAPI, lieurAPI http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if consul.Owns(r.URL.Path) {
			consulAPI.ServeHTTP(w, r)
			return
		}
		lieurAPI.ServeHTTP(w, r)
	})
}

// mountPromSD serves Prometheus' HTTP service discovery (/v1/sd/) and
// everything else with next.
func mountPromSD(sd, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if promsd.Owns(r.URL.Path) {
			sd.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// mountUI serves the web UI's static files (/ui, /ui/...) and everything
// else with next. Without it, /ui/ is an unknown path of the API (404).
func mountUI(u, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ui.Owns(r.URL.Path) {
			u.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Node is the agent's binder node.
func (a *Agent) Node() *binder.Node { return a.node }

// Run serves until ctx ends, then stops gracefully.
func (a *Agent) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	var dnsErr <-chan error // nil without DNS: never ready
	if a.dns != nil {
		if err := a.dns.Start(); err != nil {
			a.Close()
			return err
		}
		dnsErr = a.dns.Err()
	}
	go func() {
		if err := a.http.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http serve: %w", err)
		}
	}()
	a.log.Info("lieur agent ready", "version", version, "id", a.cfg.ID, "http_addr", a.cfg.HTTPAddr, "raft_addr", a.cfg.RaftAddr)
	runErr := make(chan error, 1)
	go func() { runErr <- a.node.Run(ctx) }()
	stopReloads := a.reloadOnSIGHUP()
	defer stopReloads()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	case err = <-runErr:
	case err = <-dnsErr:
	}
	if cerr := a.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close stops the node (handing over leadership first when it leads), then
// the HTTP server.
func (a *Agent) Close() error {
	var err error
	a.close.Do(func() {
		a.log.Info("stopping")
		if a.dns != nil {
			// First: it reads the node's memory, which must outlive it.
			a.dns.Close()
		}
		err = a.node.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if serr := a.http.Shutdown(ctx); serr != nil {
			a.http.Close()
		}
		a.peer.Close()
		a.log.Info("stopped")
	})
	return err
}

func newAgentCmd() *cobra.Command {
	var cfg AgentConfig
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a binder node",
		Long: `Run one binder: a Raft member holding the service table, serving the HTTP API.

A node whose data dir holds no Raft state bootstraps the voters named by --peers
(or, with --join, asks an existing cluster to add it); a node with state resumes
from it and never bootstraps again.`,
		Example: `  lieur agent --id n1 --raft-addr 127.0.0.1:7001 --http-addr 127.0.0.1:8001 --data-dir /var/lib/lieur/n1 \
    --peers n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.Validate(); err != nil {
				return err
			}
			logger := hclog.New(&hclog.LoggerOptions{
				Name:   cfg.ID,
				Level:  hclog.LevelFromString(cfg.LogLevel),
				Output: os.Stderr,
			})
			a, err := NewAgent(cfg, logger)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ID, "id", "", "node id, stable across restarts (required)")
	f.StringVar(&cfg.RaftAddr, "raft-addr", "", "host:port for Raft traffic, bound and advertised (required)")
	f.StringVar(&cfg.HTTPAddr, "http-addr", "", "host:port for the HTTP API, bound and advertised (required)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for the Raft log and snapshots (required)")
	f.StringVar(&cfg.Peers, "peers", "", "initial voters as id=host:port,... including this node")
	f.StringVar(&cfg.Join, "join", "", "URL of a node of an existing cluster to join (instead of --peers)")
	f.DurationVar(&cfg.Node.JoinTimeout, "join-timeout", 30*time.Second, "with --join, how long to keep asking before giving up with an error")
	f.StringVar(&cfg.RecoverPeers, "recover-peers", "", "after losing a quorum for good: make this node's cluster the servers FILE lists (id=host:port lines, or raft's peers.json), keeping every write it has; docs/operations.md")
	f.BoolVar(&cfg.Node.Nonvoter, "nonvoter", false, "with --join, join as a read replica: serves reads, forwards writes, never votes or counts toward the quorum")
	f.DurationVar(&cfg.Node.CleanupDeadAfter, "cleanup-dead-after", 0, "as leader, remove a server not heard from over Raft for this long (at least 1s), keeping at least 3 voters and a quorum (0: off)")
	f.StringVar(&cfg.LogLevel, "log-level", "info", "trace, debug, info, warn or error")
	f.BoolVar(&cfg.Pprof, "pprof", false, "serve runtime profiles at /debug/pprof/ on the HTTP address")
	f.StringVar(&cfg.TokenFile, "token-file", "", "require tokens: a file of TOKEN ROLE lines (admin, register[:TYPE,...], read, cluster)")
	f.BoolVar(&cfg.AuthReads, "auth-reads", false, "with --token-file, reads need a read token too")
	f.StringVar(&cfg.Datacenter, "datacenter", consul.DefaultDatacenter, "the datacenter the Consul-compatible endpoints report (lower-case letters, digits, '_' and '-')")
	f.StringSliceVar(&cfg.AllowOrigins, "allow-origin", nil, "web origins (https://host:port, or *) whose pages may call the API from a browser (CORS); repeatable; none by default")
	f.StringVar(&cfg.TLS.Cert, "tls-cert", "", "this node's certificate (PEM): the API over TLS 1.3, Raft over mutual TLS")
	f.StringVar(&cfg.TLS.Key, "tls-key", "", "the certificate's private key (PEM)")
	f.StringVar(&cfg.TLS.CA, "tls-ca", "", "the CA that signs every node's certificate (PEM)")
	f.BoolVar(&cfg.UI, "ui", true, "serve the web UI at /ui/ (static files; the page reads the API with the token entered in it)")
	f.StringVar(&cfg.DNSAddr, "dns-addr", "", "serve DNS (UDP and TCP) on this host:port; off when empty")
	f.StringVar(&cfg.DNSDomain, "dns-domain", dnsfront.DefaultDomain, "the DNS zone served: <type>.service.<domain>")
	f.DurationVar(&cfg.DNSTTL, "dns-ttl", 0, "TTL of DNS answers and of negative caching (whole seconds)")
	f.DurationVar(&cfg.Node.HeartbeatTimeout, "heartbeat-timeout", 350*time.Millisecond, "Raft heartbeat timeout")
	f.DurationVar(&cfg.Node.ElectionTimeout, "election-timeout", 350*time.Millisecond, "Raft election timeout")
	f.DurationVar(&cfg.Node.LeaderLeaseTimeout, "leader-lease-timeout", 175*time.Millisecond, "Raft leader lease timeout")
	f.DurationVar(&cfg.Node.CommitTimeout, "commit-timeout", 10*time.Millisecond, "Raft commit timeout")
	f.Uint64Var(&cfg.Node.SnapshotThreshold, "snapshot-threshold", 8192, "log entries between snapshots")
	f.DurationVar(&cfg.Node.SnapshotInterval, "snapshot-interval", 30*time.Second, "how often to check whether to snapshot")
	f.Uint64Var(&cfg.Node.TrailingLogs, "trailing-logs", 10240, "log entries kept after a snapshot")
	f.DurationVar(&cfg.Node.WriteHold, "write-hold", 5*time.Second, "how long a write waits for a leader before failing with 503")
	f.DurationVar(&cfg.Node.ProbeTimeout, "probe-timeout", time.Second, "timeout of one TCP probe when verifying a down-report")
	f.IntVar(&cfg.Node.ProbeAttempts, "probe-attempts", 2, "TCP probes per verification")
	f.BoolVar(&cfg.Node.ExpireWithoutProbe, "expire-without-probe", false, "remove an instance whose lease passed without probing it (default: one that answers is kept, flagged stale-lease)")
	f.DurationVar(&cfg.Node.MaxStaleness, "max-staleness", 2*time.Second, "a follower that has not heard from a leader for this long refuses default reads (503 stale; ?stale=true still reads)")
	return cmd
}
