package grpcresolver

import (
	"encoding/json"
	"fmt"
	"sync/atomic"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/roundrobin"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
)

// BalancerName is the name of the load-balancing policy that reports
// unreachable instances (registered with gRPC by this package's init).
// Its config names the child policy that balances:
// {"childPolicy":[{"round_robin":{}}]}, the first registered one of the
// list; round_robin when the config is empty.
const BalancerName = "lieur_down_reports"

func init() { balancer.Register(downReportsBuilder{}) }

type downReportsBuilder struct{}

func (downReportsBuilder) Name() string { return BalancerName }

func (downReportsBuilder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &downReportsBalancer{opts: opts}
	b.cc = &reportingConn{ClientConn: cc, b: b}
	return b
}

// lbConfig is the parsed config of the policy.
type lbConfig struct {
	serviceconfig.LoadBalancingConfig
	child    string
	childCfg serviceconfig.LoadBalancingConfig
}

func (downReportsBuilder) ParseConfig(raw json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	var cfg struct {
		ChildPolicy []map[string]json.RawMessage `json:"childPolicy"`
	}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return nil, fmt.Errorf("%s: bad config: %w", BalancerName, err)
		}
	}
	if len(cfg.ChildPolicy) == 0 {
		return &lbConfig{child: roundrobin.Name}, nil
	}
	var names []string
	for _, entry := range cfg.ChildPolicy {
		if len(entry) != 1 {
			return nil, fmt.Errorf("%s: each childPolicy entry names one policy, got %d", BalancerName, len(entry))
		}
		for name, childRaw := range entry {
			names = append(names, name)
			if name == BalancerName {
				return nil, fmt.Errorf("%s: cannot be its own child policy", BalancerName)
			}
			bb := balancer.Get(name)
			if bb == nil {
				continue
			}
			out := &lbConfig{child: name}
			if p, ok := bb.(balancer.ConfigParser); ok {
				c, err := p.ParseConfig(childRaw)
				if err != nil {
					return nil, fmt.Errorf("%s: child policy %s: %w", BalancerName, name, err)
				}
				out.childCfg = c
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("%s: no registered policy among the child policies %v", BalancerName, names)
}

// downReportsBalancer runs a child policy and reports the instances whose
// connections fail. Its Balancer methods are called from gRPC's balancer
// goroutine, one at a time.
type downReportsBalancer struct {
	opts      balancer.BuildOptions
	cc        *reportingConn
	child     balancer.Balancer
	childName string
	rep       atomic.Pointer[reporter] // from the resolver's latest state
}

func (b *downReportsBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	cfg, _ := s.BalancerConfig.(*lbConfig)
	if cfg == nil {
		cfg = &lbConfig{child: roundrobin.Name}
	}
	rep, _ := s.ResolverState.Attributes.Value(reporterKey{}).(*reporter)
	b.rep.Store(rep)
	if b.child == nil || b.childName != cfg.child {
		bb := balancer.Get(cfg.child)
		if bb == nil {
			return fmt.Errorf("%s: child policy %q is not registered: %w", BalancerName, cfg.child, balancer.ErrBadResolverState)
		}
		if b.child != nil {
			b.child.Close()
		}
		b.child, b.childName = bb.Build(b.cc, b.opts), cfg.child
	}
	return b.child.UpdateClientConnState(balancer.ClientConnState{ResolverState: s.ResolverState, BalancerConfig: cfg.childCfg})
}

func (b *downReportsBalancer) ResolverError(err error) {
	if b.child != nil {
		b.child.ResolverError(err)
	}
}

// UpdateSubConnState is never called: every SubConn has a StateListener.
func (b *downReportsBalancer) UpdateSubConnState(sc balancer.SubConn, s balancer.SubConnState) {
	if b.child != nil {
		b.child.UpdateSubConnState(sc, s)
	}
}

func (b *downReportsBalancer) ExitIdle() {
	if b.child != nil {
		b.child.ExitIdle()
	}
}

func (b *downReportsBalancer) Close() {
	if b.child != nil {
		b.child.Close()
		b.child = nil
	}
}

// reportingConn is the ClientConn the child policy sees: it watches the
// state of every SubConn the child creates for an instance of the
// resolver.
type reportingConn struct {
	balancer.ClientConn
	b *downReportsBalancer
}

func (c *reportingConn) NewSubConn(addrs []resolver.Address, opts balancer.NewSubConnOptions) (balancer.SubConn, error) {
	// A child that has no StateListener (the deprecated
	// UpdateSubConnState path) is left alone: no reports for it.
	if len(addrs) == 1 && opts.StateListener != nil {
		if id, typ, ok := InstanceOf(addrs[0]); ok {
			ref, addr, inner := instanceRef{id: id, typ: typ}, addrs[0].Addr, opts.StateListener
			opts.StateListener = func(s balancer.SubConnState) {
				if rep := c.b.rep.Load(); rep != nil {
					switch s.ConnectivityState {
					case connectivity.TransientFailure:
						rep.failed(ref, addr, s.ConnectionError)
					case connectivity.Ready:
						rep.ready(ref)
					}
				}
				inner(s)
			}
		}
	}
	return c.ClientConn.NewSubConn(addrs, opts)
}
