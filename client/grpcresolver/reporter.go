package grpcresolver

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/lieur/lieur/client"
	"github.com/lieur/lieur/transport/wire"
)

// Limits of down-reports.
const (
	// reportSpacing is the least time between two reports of one
	// instance.
	reportSpacing = 5 * time.Second
	// maxReporting bounds the reports under way at once.
	maxReporting = 4
	// reportTimeout bounds one report (the binder probes the instance
	// before it answers).
	reportTimeout = 15 * time.Second
	// closeGrace is how long closing waits for the reports already sent
	// before it cancels them, so that a short-lived client's reports are
	// not lost when it closes its connection.
	closeGrace = 2 * time.Second
)

// downReporter is what a reporter needs of the client library.
type downReporter interface {
	ReportDown(ctx context.Context, inst client.Instance) (string, error)
}

type reporterKey struct{}

// reporter turns connection failures into down-reports, one per instance
// per failure episode. Its methods never block on the network, so the
// balancer may call them from gRPC's goroutines.
type reporter struct {
	c        downReporter
	onReport func(DownReport)
	spacing  time.Duration
	grace    time.Duration // see closeGrace

	ctx    context.Context // canceled by close, after the grace
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sem    chan struct{}
	mu     sync.Mutex
	byID   map[string]*episode
	done   bool
}

// episode is what the reporter remembers of one instance.
type episode struct {
	reported bool      // reported in the current failure episode
	last     time.Time // when it was last reported
}

func newReporter(c downReporter, onReport func(DownReport)) *reporter {
	ctx, cancel := context.WithCancel(context.Background())
	return &reporter{
		c: c, onReport: onReport, spacing: reportSpacing, grace: closeGrace,
		ctx: ctx, cancel: cancel, sem: make(chan struct{}, maxReporting), byID: map[string]*episode{},
	}
}

// failed records that a connection to the instance failed with cause, and
// reports the instance unless it was reported in this episode or too
// recently.
func (p *reporter) failed(ref instanceRef, addr string, cause error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	e := p.byID[ref.id]
	if e == nil {
		e = &episode{}
		p.byID[ref.id] = e
	}
	now := time.Now()
	if e.reported || (!e.last.IsZero() && now.Sub(e.last) < p.spacing) {
		return
	}
	e.reported, e.last = true, now
	p.wg.Add(1)
	go p.report(ref, addr, cause)
}

// ready records that a connection to the instance works: its failure
// episode, if any, is over.
func (p *reporter) ready(ref instanceRef) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.byID[ref.id]; e != nil {
		e.reported = false
	}
}

// keepOnly forgets the instances that are not in insts (they left the set).
func (p *reporter) keepOnly(insts []client.Instance) {
	keep := make(map[string]bool, len(insts))
	for _, in := range insts {
		keep[in.ID] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for id := range p.byID {
		if !keep[id] {
			delete(p.byID, id)
		}
	}
}

func (p *reporter) report(ref instanceRef, addr string, cause error) {
	defer p.wg.Done()
	select {
	case p.sem <- struct{}{}:
		defer func() { <-p.sem }()
	case <-p.ctx.Done():
		return
	}
	p.mu.Lock()
	closed := p.done
	p.mu.Unlock()
	if closed {
		return // not sent yet: dropped
	}
	ctx, cancel := context.WithTimeout(p.ctx, reportTimeout)
	verdict, err := p.c.ReportDown(ctx, client.Instance{ID: ref.id, Type: ref.typ})
	cancel()
	if p.ctx.Err() != nil {
		return // canceled by close: nobody to tell
	}
	if (err != nil && !errors.Is(err, client.ErrUnknownID)) || verdict == wire.VerdictUnknown {
		// The binders could not decide: the next failure may report again
		// (after the spacing).
		p.mu.Lock()
		if e := p.byID[ref.id]; e != nil {
			e.reported = false
		}
		p.mu.Unlock()
	}
	if p.onReport != nil {
		p.onReport(DownReport{ID: ref.id, Type: ref.typ, Addr: addr, Cause: cause, Verdict: verdict, Err: err})
	}
}

// close stops the reporter: failures are ignored from now on, reports not
// yet sent are dropped, and those under way get the grace to finish before
// they are canceled. When close returns, none is left.
func (p *reporter) close() {
	p.mu.Lock()
	p.done = true
	p.mu.Unlock()
	finished := make(chan struct{})
	go func() { p.wg.Wait(); close(finished) }()
	t := time.NewTimer(p.grace)
	defer t.Stop()
	select {
	case <-finished:
	case <-t.C:
	}
	p.cancel()
	<-finished
}
