package grpcresolver

import (
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/grpc/resolver"

	"github.com/lieur/lieur/client"
)

// Scheme is the URI scheme of the targets this package resolves.
const Scheme = "lieur"

// Service configs the resolver sends when no WithServiceConfig says
// otherwise.
const (
	// RoundRobinConfig: round_robin over the instances.
	RoundRobinConfig = `{"loadBalancingConfig":[{"round_robin":{}}]}`
	// DownReportsConfig: round_robin, with unreachable instances reported
	// to the binders (the config WithDownReports selects).
	DownReportsConfig = `{"loadBalancingConfig":[{"` + BalancerName + `":{"childPolicy":[{"round_robin":{}}]}}]}`
)

// Option changes a Builder.
type Option func(*options)

type options struct {
	downReports   bool
	serviceConfig *string // nil: the default for downReports
	onReport      func(DownReport)
}

// WithDownReports makes the resolvers report unreachable instances: each
// state they send carries a reporter for the "lieur_down_reports"
// balancer, and their default service config selects that balancer around
// round_robin (DownReportsConfig). A WithServiceConfig that names another
// policy gets no reports.
func WithDownReports() Option {
	return func(o *options) { o.downReports = true }
}

// WithServiceConfig makes the resolvers send serviceConfigJSON (a gRPC
// service config) instead of the default RoundRobinConfig or
// DownReportsConfig. It is parsed by each resolver's Build: an invalid
// config fails Build.
func WithServiceConfig(serviceConfigJSON string) Option {
	return func(o *options) { o.serviceConfig = &serviceConfigJSON }
}

// WithoutServiceConfig makes the resolvers send no service config, so
// that grpc.WithDefaultServiceConfig (or gRPC's default, pick_first)
// applies.
func WithoutServiceConfig() Option {
	return WithServiceConfig("")
}

// WithOnDownReport calls f after each down-report the resolvers made
// (WithDownReports), with its outcome. f runs on the report's own
// goroutine, possibly on several at once; it must not block for long.
func WithOnDownReport(f func(DownReport)) Option {
	return func(o *options) { o.onReport = f }
}

// DownReport is the outcome of one down-report.
type DownReport struct {
	ID   string // the instance's id
	Type string // its type
	Addr string // the address whose connection failed
	// Cause is the connection error that triggered the report.
	Cause error
	// Verdict is the binder's: wire.VerdictRemoved, wire.VerdictAlive or
	// wire.VerdictUnknown; empty when Err is set.
	Verdict string
	// Err is why the report failed; an error matching client.ErrUnknownID
	// means the instance was already gone.
	Err error
}

// Builder builds a resolver for each "lieur" target a gRPC ClientConn
// dials. It is safe for concurrent use and may be registered globally
// with resolver.Register or passed to one dial with grpc.WithResolvers.
type Builder struct {
	cfg  client.Config
	opts options
}

var _ resolver.Builder = (*Builder)(nil)

// NewBuilder returns a Builder whose resolvers ask the binders of cfg
// (see client.Config). cfg.Binders may be empty when every target names
// its binders in its authority. Each resolver has its own client.Client,
// closed with the resolver.
func NewBuilder(cfg client.Config, opts ...Option) (*Builder, error) {
	cfg.Binders = append([]string(nil), cfg.Binders...)
	if len(cfg.Binders) > 0 {
		check := cfg
		if err := check.Validate(); err != nil {
			return nil, fmt.Errorf("grpcresolver: %w", err)
		}
	} else if cfg.RequestTimeout < 0 {
		return nil, fmt.Errorf("grpcresolver: negative request timeout %v", cfg.RequestTimeout)
	}
	b := &Builder{cfg: cfg}
	for _, o := range opts {
		o(&b.opts)
	}
	return b, nil
}

// Scheme returns "lieur".
func (b *Builder) Scheme() string { return Scheme }

// serviceConfig is the JSON the resolvers send; "" for none.
func (b *Builder) serviceConfig() string {
	switch {
	case b.opts.serviceConfig != nil:
		return *b.opts.serviceConfig
	case b.opts.downReports:
		return DownReportsConfig
	default:
		return RoundRobinConfig
	}
}

// Build starts a resolver for target, of the form lieur:///TYPE or
// lieur://HOST:PORT,.../TYPE. It fails on a target without a valid type,
// on a malformed binder list, when no binder is known (neither in the
// target nor in the Builder's Config) and on an invalid service config.
func (b *Builder) Build(target resolver.Target, cc resolver.ClientConn, bo resolver.BuildOptions) (resolver.Resolver, error) {
	typ, cfg, err := b.parseTarget(target)
	if err != nil {
		return nil, err
	}
	var sc string
	if !bo.DisableServiceConfig {
		sc = b.serviceConfig()
	}
	return newResolver(target, cc, typ, cfg, sc, b.opts)
}

// parseTarget returns the service type a target names and the client
// configuration to resolve it with.
func (b *Builder) parseTarget(target resolver.Target) (string, client.Config, error) {
	raw := target.URL.String()
	fail := func(format string, a ...any) (string, client.Config, error) {
		return "", client.Config{}, fmt.Errorf("grpcresolver: target %q: "+format, append([]any{raw}, a...)...)
	}
	if target.URL.RawQuery != "" || target.URL.Fragment != "" || target.URL.User != nil {
		return fail("must not carry user info, a query or a fragment")
	}
	typ := target.Endpoint()
	switch {
	case typ == "":
		return fail("names no service type (want %s:///TYPE or %s://HOST:PORT,.../TYPE)", Scheme, Scheme)
	case strings.Contains(typ, "/"):
		return fail("service type %q contains '/' (want %s:///TYPE)", typ, Scheme)
	case !isDNSLabel(typ):
		return fail("service type %q must be a DNS label (lower-case letters, digits and '-', 1 to 63 characters, not starting or ending with '-')", typ)
	}

	cfg := b.cfg
	cfg.Binders = append([]string(nil), b.cfg.Binders...)
	if authority := target.URL.Host; authority != "" {
		scheme := "http://"
		if b.wantsHTTPS() {
			scheme = "https://"
		}
		cfg.Binders = nil
		for _, hp := range strings.Split(authority, ",") {
			if strings.TrimSpace(hp) == "" || strings.Contains(hp, "/") {
				return fail("bad binder %q in the authority (want HOST:PORT,HOST:PORT)", hp)
			}
			cfg.Binders = append(cfg.Binders, scheme+hp)
		}
	}
	if len(cfg.Binders) == 0 {
		return fail("no binders: name them in the target (%s://HOST:PORT,.../%s) or in the Builder's client.Config", Scheme, typ)
	}
	check := cfg
	if err := check.Validate(); err != nil {
		if target.URL.Host != "" {
			return fail("bad authority: %w", err)
		}
		return fail("%w", err)
	}
	return typ, cfg, nil
}

// wantsHTTPS: binders named in a target's authority are reached over TLS
// when the Builder's Config has a TLS configuration or https:// binders.
func (b *Builder) wantsHTTPS() bool {
	if b.cfg.TLS != nil {
		return true
	}
	for _, s := range b.cfg.Binders {
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(s)), "https://") {
			return true
		}
	}
	return false
}

// isDNSLabel mirrors the binders' rule for a service type, so that a bad
// target fails Build rather than every query.
func isDNSLabel(s string) bool {
	if len(s) < 1 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// newHTTPClient returns the HTTP client a resolver's list, blocking
// queries and reports share: cfg's own, or one with a private transport
// (so Close can drop its connections) that uses cfg.TLS.
func newHTTPClient(cfg client.Config) (*http.Client, bool) {
	if cfg.HTTPClient != nil {
		return cfg.HTTPClient, false
	}
	base, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return &http.Client{}, false
	}
	tr := base.Clone()
	tr.TLSClientConfig = cfg.TLS
	return &http.Client{Transport: tr}, true
}
