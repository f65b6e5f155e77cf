package grpcresolver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/lieur/lieur/client"
)

// Timings of a resolver.
const (
	// followWait is the wait of each blocking query. It bounds how long a
	// resolver that follows a hung binder can miss changes (ResolveNow,
	// which gRPC calls when a connection fails, ends such a query at once).
	followWait = time.Minute
	// relistSpacing is the least time between the starts of two lists
	// that ResolveNow asks for.
	relistSpacing = 500 * time.Millisecond
)

// lieurResolver follows one service type for one gRPC ClientConn.
type lieurResolver struct {
	cc     resolver.ClientConn
	target string
	typ    string
	c      *client.Client
	hc     *http.Client
	ownHC  bool // hc's transport is the resolver's own
	token  string
	wait   time.Duration // of each blocking query
	// attemptTimeout bounds one attempt beyond its wait.
	attemptTimeout time.Duration
	staleFallback  bool
	sc             *serviceconfig.ParseResult // nil: send none
	rep            *reporter                  // nil without down-reports

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns

	// now has a token when ResolveNow asked for a list; cancelFollow, if
	// set, ends the blocking query under way.
	now          chan struct{}
	followMu     sync.Mutex
	cancelFollow context.CancelFunc

	closeOnce sync.Once

	// Owned by run's goroutine.
	lastIdx  uint64
	sent     bool
	last     []client.Instance
	lastList time.Time
}

func newResolver(target resolver.Target, cc resolver.ClientConn, typ string, cfg client.Config, scJSON string, opts options) (*lieurResolver, error) {
	var sc *serviceconfig.ParseResult
	if scJSON != "" {
		sc = cc.ParseServiceConfig(scJSON)
		if sc.Err != nil {
			return nil, fmt.Errorf("grpcresolver: target %q: service config: %w", target.URL.String(), sc.Err)
		}
	}
	hc, own := newHTTPClient(cfg)
	cfg.HTTPClient = hc
	c, err := client.New(cfg)
	if err != nil {
		if own {
			hc.CloseIdleConnections()
		}
		return nil, fmt.Errorf("grpcresolver: target %q: %w", target.URL.String(), err)
	}
	timeout := cfg.RequestTimeout
	if timeout == 0 {
		timeout = client.DefaultRequestTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &lieurResolver{
		cc:             cc,
		target:         target.URL.String(),
		typ:            typ,
		c:              c,
		hc:             hc,
		ownHC:          own,
		token:          cfg.Token,
		wait:           followWait,
		attemptTimeout: timeout,
		staleFallback:  !cfg.NoStaleFallback,
		sc:             sc,
		ctx:            ctx,
		cancel:         cancel,
		done:           make(chan struct{}),
		now:            make(chan struct{}, 1),
	}
	if opts.downReports {
		r.rep = newReporter(c, opts.onReport)
	}
	go r.run()
	return r, nil
}

// ResolveNow makes the resolver list the type again without waiting for
// the blocking query under way. It never blocks.
func (r *lieurResolver) ResolveNow(resolver.ResolveNowOptions) {
	select {
	case r.now <- struct{}{}:
	default:
	}
	r.followMu.Lock()
	if r.cancelFollow != nil {
		r.cancelFollow()
	}
	r.followMu.Unlock()
}

// Close stops the resolver: its goroutine and its reports have ended, and
// its client is closed, when Close returns (a report already sent gets up
// to closeGrace to finish). It is idempotent.
func (r *lieurResolver) Close() {
	r.closeOnce.Do(func() {
		r.cancel()
		<-r.done
		if r.rep != nil {
			r.rep.close()
		}
		_ = r.c.Close()
		if r.ownHC {
			r.hc.CloseIdleConnections()
		}
	})
}

// run lists the type, then follows it with blocking queries, until Close.
func (r *lieurResolver) run() {
	defer close(r.done)
	failures := 0
	relist := true
	for r.ctx.Err() == nil {
		if relist {
			if !r.sleep(time.Until(r.lastList.Add(relistSpacing))) {
				return
			}
			r.drainNow()
			r.lastList = time.Now()
			list, idx, err := r.list()
			if err != nil {
				if r.ctx.Err() != nil {
					return
				}
				failures++
				r.cc.ReportError(fmt.Errorf("grpcresolver: %s: list: %w", r.target, err))
				if !r.sleep(backoff(failures)) {
					return
				}
				continue
			}
			failures, relist = 0, false
			r.apply(list, idx)
		}

		fctx, cancel := context.WithCancel(r.ctx)
		r.followMu.Lock()
		r.cancelFollow = cancel
		r.followMu.Unlock()
		if r.nowAsked() {
			cancel() // ResolveNow came in before the query could be ended
		}
		start := time.Now()
		list, idx, err := r.follow(fctx, r.lastIdx)
		r.followMu.Lock()
		r.cancelFollow = nil
		r.followMu.Unlock()
		cancel()

		switch {
		case r.ctx.Err() != nil:
			return
		case err == nil && idx > r.lastIdx:
			failures = 0
			r.apply(list, idx)
		case err == nil:
			// The wait ran out, or a lagging binder answered. An answer
			// that came back quickly with nothing new means a binder that
			// does not block: do not let it turn the loop into a spin.
			if time.Since(start) < time.Second && !r.nowAsked() {
				failures++
				if !r.sleep(backoff(failures)) {
					return
				}
			} else {
				failures = 0
			}
		case fctx.Err() != nil && r.nowAsked():
			// ResolveNow ended the query; the list follows.
		default:
			failures++
			r.cc.ReportError(fmt.Errorf("grpcresolver: %s: blocking query: %w", r.target, err))
			if !r.sleep(backoff(failures)) {
				return
			}
			relist = true
		}
		if r.nowAsked() {
			relist = true
		}
	}
}

// list reads the type's instances through the client library (failover,
// min_index, stale fallback). A type with no instance is an empty list.
func (r *lieurResolver) list() ([]client.Instance, uint64, error) {
	list, idx, err := r.c.ServicesOf(r.ctx, r.typ)
	if err != nil && errors.Is(err, client.ErrUnknownService) {
		return []client.Instance{}, idx, nil
	}
	return list, idx, err
}

// nowAsked reports whether ResolveNow asked for a list, without taking
// the request.
func (r *lieurResolver) nowAsked() bool { return len(r.now) > 0 }

func (r *lieurResolver) drainNow() {
	select {
	case <-r.now:
	default:
	}
}

// sleep waits for d (no time when d <= 0); it reports false when the
// resolver was closed first.
func (r *lieurResolver) sleep(d time.Duration) bool {
	if d <= 0 {
		return r.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.ctx.Done():
		return false
	}
}

// apply sends the instances to gRPC when they are newer than, and differ
// from, what was sent last.
func (r *lieurResolver) apply(list []client.Instance, idx uint64) {
	if r.sent && idx < r.lastIdx {
		return // a binder that lags behind one that answered before
	}
	r.lastIdx = idx
	offered := usable(list)
	if r.sent && sameInstances(offered, r.last) {
		return
	}
	r.sent, r.last = true, offered
	if r.rep != nil {
		r.rep.keepOnly(offered)
	}
	// An error here is gRPC's balancer refusing the state (round_robin
	// does for an empty one); it asks for ResolveNow itself, and the
	// blocking query brings the next change anyway.
	_ = r.cc.UpdateState(r.state(offered))
}

// state is the resolver.State for a set of instances.
func (r *lieurResolver) state(insts []client.Instance) resolver.State {
	s := resolver.State{
		Endpoints:     make([]resolver.Endpoint, 0, len(insts)),
		Addresses:     make([]resolver.Address, 0, len(insts)),
		ServiceConfig: r.sc,
	}
	for _, in := range insts {
		attrs := attributes.New(instanceKey{}, instanceRef{id: in.ID, typ: in.Type})
		addr := resolver.Address{Addr: in.Addr(), Attributes: attrs}
		s.Addresses = append(s.Addresses, addr)
		s.Endpoints = append(s.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{addr}, Attributes: attrs})
	}
	if r.rep != nil {
		s.Attributes = attributes.New(reporterKey{}, r.rep)
	}
	return s
}

// usable is what lookups would choose from: the passing instances (a
// binder too old to say counts as passing), else the warning ones, never
// the critical ones.
func usable(list []client.Instance) []client.Instance {
	var passing, warning []client.Instance
	for _, in := range list {
		switch in.Status {
		case "", "passing":
			passing = append(passing, in)
		case "warning":
			warning = append(warning, in)
		}
	}
	if len(passing) > 0 {
		return passing
	}
	if warning == nil {
		return []client.Instance{}
	}
	return warning
}

// sameInstances compares what gRPC is given of two lists: ids, types and
// addresses, in order (binders sort instances by id).
func sameInstances(a, b []client.Instance) bool {
	return slices.EqualFunc(a, b, func(x, y client.Instance) bool {
		return x.ID == y.ID && x.Type == y.Type && x.Address == y.Address && x.Port == y.Port
	})
}

type instanceKey struct{}

// instanceRef is what an address carries of its instance; comparable, so
// that gRPC's attribute comparisons work.
type instanceRef struct{ id, typ string }

// InstanceOf returns the id and type of the lieur instance behind an
// address (or an endpoint's address) that this package's resolver
// produced; ok is false for any other address.
func InstanceOf(addr resolver.Address) (id, typ string, ok bool) {
	ref, ok := addr.Attributes.Value(instanceKey{}).(instanceRef)
	return ref.id, ref.typ, ok
}

// backoff returns the pause after the n-th consecutive failure: doubling
// from 50ms up to 1s, with jitter so that clients cut off together do not
// return in step (the client library's Watch does the same).
func backoff(n int) time.Duration {
	d := 50 * time.Millisecond << min(n-1, 5)
	d = min(d, time.Second)
	return d/2 + rand.N(d/2+1)
}
