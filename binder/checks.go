package binder

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/lieur/lieur/fsm"
)

// Checks are run once, cluster-wide, by the leader, the same way as leases
// (lease.go): deadlines and schedules in the leader's memory, rebuilt from
// the table (with a full TTL of grace) when a node starts leading, and the
// log written only when a check's status changes.
//
//   - ttl: the owner reports pass/warn/fail/update (CheckUpdate); a check
//     not reported for its TTL turns critical.
//   - tcp, http: the leader connects or requests every interval, with the
//     check's timeout; SuccessBeforePassing and FailuresBeforeCritical
//     consecutive results move the status.
//   - DeregisterAfterMillis: an instance whose check stayed critical that
//     long is removed (reason critical-too-long), naming its registration.
//
// Why the leader and not spread over the binders: one prober per check
// without coordination, the leader already holds the deadlines of leases,
// and a failover restarts every schedule with a grace period. The cost is
// the leader's: a check is one dial or request per interval.

// maxConcurrentProbes bounds the tcp and http checks the leader runs at
// once; the others wait their turn.
const maxConcurrentProbes = 256

// checkRun is the leader's state of one check.
type checkRun struct {
	instID        string
	regIndex      uint64
	def           fsm.Check
	status        string
	deadline      time.Time // ttl: when it turns critical
	nextRun       time.Time // tcp, http
	running       bool
	successes     int
	failures      int
	criticalSince time.Time // zero unless critical
	removing      bool
	renewed       time.Time // last report (ttl)
	expiredAt     time.Time // when its expiry was decided (ttl)
}

// renewedBefore reports whether the last report came before the expiry
// being written now was decided.
func (r *checkRun) renewedBefore(time.Time) bool { return !r.renewed.After(r.expiredAt) }

type checker struct {
	mu      sync.Mutex
	active  bool
	byCheck map[string]*checkRun
	byInst  map[string][]string
	// touched, between start and merge, holds the instances observe saw
	// change: merge must not bring back an older version of them.
	touched map[string]bool
}

func newChecker() *checker {
	return &checker{byCheck: map[string]*checkRun{}, byInst: map[string][]string{}}
}

func (c *checker) addLocked(inst fsm.Instance, now time.Time) {
	for _, def := range inst.Checks {
		// Probes of many checks start spread over their interval, not all
		// in one tick (a new leader takes over every check at once).
		r := &checkRun{instID: inst.ID, regIndex: inst.Index, def: def, status: def.Status, nextRun: now}
		if def.IntervalMillis > 0 {
			r.nextRun = now.Add(rand.N(time.Duration(def.IntervalMillis) * time.Millisecond))
		}
		if def.Kind == fsm.CheckTTL {
			r.deadline = now.Add(time.Duration(def.TTLMillis) * time.Millisecond)
		}
		if def.Status == fsm.StatusCritical {
			r.criticalSince = now
		}
		c.byCheck[def.ID] = r
		c.byInst[inst.ID] = append(c.byInst[inst.ID], def.ID)
	}
}

func (c *checker) dropLocked(instID string) {
	for _, id := range c.byInst[instID] {
		if r := c.byCheck[id]; r != nil && r.instID == instID {
			delete(c.byCheck, id)
		}
	}
	delete(c.byInst, instID)
}

// activate starts every check afresh: a full TTL of grace, probes now.
func (c *checker) activate(insts []fsm.Instance, now time.Time) {
	c.start()
	c.merge(insts, now)
}

// start begins a leadership term's checks: from now on observe records
// every change. Call it before reading the table that merge takes, so
// that a change applied in between is not lost.
func (c *checker) start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active = true
	c.byCheck, c.byInst = map[string]*checkRun{}, map[string][]string{}
	c.touched = map[string]bool{}
}

// merge adds the checks of a table read after start, except those of
// instances observe has seen change since (it holds a newer version, or
// none), and ends the window.
func (c *checker) merge(insts []fsm.Instance, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, inst := range insts {
		if !c.touched[inst.ID] {
			c.addLocked(inst, now)
		}
	}
	c.touched = nil
}

func (c *checker) deactivate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active = false
	c.byCheck, c.byInst = map[string]*checkRun{}, map[string][]string{}
}

// observe keeps the runs in step with applied changes (on the leader).
func (c *checker) observe(ch fsm.Change, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.active {
		return
	}
	inst := ch.Instance
	if c.touched != nil {
		c.touched[inst.ID] = true
	}
	switch ch.Kind {
	case fsm.Added:
		c.dropLocked(inst.ID)
		c.addLocked(inst, now)
	case fsm.Removed:
		c.dropLocked(inst.ID)
	case fsm.HealthChanged:
		if _, known := c.byInst[inst.ID]; !known {
			// Changed before merge could add it: the change carries the
			// whole instance.
			c.addLocked(inst, now)
			return
		}
		for _, def := range inst.Checks {
			r := c.byCheck[def.ID]
			if r == nil || r.instID != inst.ID {
				continue
			}
			if def.Status == fsm.StatusCritical && r.status != fsm.StatusCritical {
				r.criticalSince = now
			} else if def.Status != fsm.StatusCritical {
				r.criticalSince = time.Time{}
			}
			r.status = def.Status
		}
	}
}

// checkAction is what the leader must do for one check now.
type checkAction struct {
	run    checkRun // a copy
	probe  bool
	status string // set a status (ttl expiry)
	output string
	remove bool
}

// due returns the actions of this tick.
func (c *checker) due(now time.Time) []checkAction {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.active {
		return nil
	}
	var out []checkAction
	for _, r := range c.byCheck {
		switch {
		case !r.criticalSince.IsZero() && r.def.DeregisterAfterMillis > 0 && !r.removing &&
			now.Sub(r.criticalSince) >= time.Duration(r.def.DeregisterAfterMillis)*time.Millisecond:
			r.removing = true
			out = append(out, checkAction{run: *r, remove: true})
		case r.def.Kind == fsm.CheckTTL && r.status != fsm.StatusCritical && now.After(r.deadline):
			// Once: the status change comes back through observe.
			r.deadline = now.Add(time.Duration(r.def.TTLMillis) * time.Millisecond)
			r.expiredAt = now
			out = append(out, checkAction{run: *r, status: fsm.StatusCritical, output: "TTL expired"})
		case (r.def.Kind == fsm.CheckTCP || r.def.Kind == fsm.CheckHTTP) && !r.running && !now.Before(r.nextRun):
			r.running = true
			r.nextRun = now.Add(time.Duration(r.def.IntervalMillis) * time.Millisecond)
			out = append(out, checkAction{run: *r, probe: true})
		}
	}
	return out
}

// result records a probe's outcome and says which status, if any, the
// check must move to. A result for a registration replaced meanwhile is
// dropped: it measured the old definition.
func (c *checker) result(checkID, instID string, regIndex uint64, status string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.byCheck[checkID]
	if r == nil || r.instID != instID || r.regIndex != regIndex {
		return "", false
	}
	r.running = false
	if status == fsm.StatusPassing {
		r.successes++
		r.failures = 0
		if r.status != fsm.StatusPassing && r.successes > r.def.SuccessBeforePassing-1 {
			return fsm.StatusPassing, true
		}
		return "", false
	}
	r.failures++
	r.successes = 0
	if status == fsm.StatusWarning {
		return fsm.StatusWarning, r.status != fsm.StatusWarning
	}
	if r.status != fsm.StatusCritical && r.failures > r.def.FailuresBeforeCritical-1 {
		return fsm.StatusCritical, true
	}
	return "", false
}

// stillExpired reports whether a ttl check's deadline is still passed: a
// report that came while its expiry was on its way renewed it.
func (c *checker) stillExpired(checkID, instID string, regIndex uint64, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.byCheck[checkID]
	return r != nil && r.instID == instID && r.regIndex == regIndex && r.renewedBefore(now)
}

// removalFailed lets a later tick try the removal again.
func (c *checker) removalFailed(checkID, instID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.byCheck[checkID]; r != nil && r.instID == instID {
		r.removing = false
	}
}

// renew records a ttl check's report.
func (c *checker) renew(checkID, instID string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.byCheck[checkID]; r != nil && r.instID == instID {
		r.deadline = now.Add(time.Duration(r.def.TTLMillis) * time.Millisecond)
		r.renewed = now
	}
}

func (c *checker) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byCheck)
}

// runChecks runs the checks while this node is a ready leader.
func (n *Node) runChecks() {
	defer n.wg.Done()
	t := time.NewTicker(leaseTick)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		if n.raft.State() != raft.Leader || !n.lead.isReady() {
			continue
		}
		for _, a := range n.checks.due(time.Now()) {
			n.wg.Add(1)
			go n.act(a)
		}
	}
}

func (n *Node) act(a checkAction) {
	defer n.wg.Done()
	r := a.run
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.WriteHold)
	defer cancel()
	switch {
	case a.remove:
		n.log.Warn("check critical too long: removing", "id", r.instID, "check", r.def.ID, "after", time.Duration(r.def.DeregisterAfterMillis)*time.Millisecond)
		_, err := n.apply(ctx, fsm.RemoveCmd{ID: r.instID, RegIndex: r.regIndex, Reason: fsm.ReasonCriticalTooLong}, true)
		if err != nil && !errors.Is(err, ErrUnknownID) && !errors.Is(err, ErrSuperseded) {
			n.log.Warn("removal of a critical instance not committed", "id", r.instID, "error", err)
			n.checks.removalFailed(r.def.ID, r.instID)
		}
	case a.probe:
		select {
		case n.probeSlots <- struct{}{}:
		case <-n.ctx.Done():
			return
		}
		status, output := n.probeCheck(r.def)
		<-n.probeSlots
		if next, move := n.checks.result(r.def.ID, r.instID, r.regIndex, status); move {
			n.setCheckStatus(ctx, r.instID, r.regIndex, r.def.ID, next, output)
		}
	default:
		if !n.checks.stillExpired(r.def.ID, r.instID, r.regIndex, time.Now()) {
			return // reported meanwhile
		}
		n.setCheckStatus(ctx, r.instID, r.regIndex, r.def.ID, a.status, a.output)
	}
}

func (n *Node) setCheckStatus(ctx context.Context, instID string, regIndex uint64, checkID, status, output string) {
	_, err := n.apply(ctx, fsm.CheckStatusCmd{ID: instID, RegIndex: regIndex, CheckID: checkID, Status: status, Output: truncateOutput(output)}, true)
	if err != nil && !errors.Is(err, ErrUnknownID) && !errors.Is(err, ErrSuperseded) {
		n.log.Warn("check status not committed", "id", instID, "check", checkID, "status", status, "error", err)
	}
}

// truncateOutput bounds a check's output; a rune cut in two is dropped.
func truncateOutput(s string) string {
	if len(s) <= fsm.MaxOutputLen {
		return s
	}
	return strings.ToValidUTF8(s[:fsm.MaxOutputLen], "")
}

// probeCheck runs one tcp or http check and returns its status and output.
func (n *Node) probeCheck(def fsm.Check) (string, string) {
	timeout := time.Duration(def.TimeoutMillis) * time.Millisecond
	if timeout <= 0 {
		timeout = min(10*time.Second, time.Duration(def.IntervalMillis)*time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(n.ctx, timeout)
	defer cancel()
	if def.Kind == fsm.CheckTCP {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", def.Target)
		if err != nil {
			return fsm.StatusCritical, fmt.Sprintf("dial tcp %s: %v", def.Target, err)
		}
		c.Close()
		return fsm.StatusPassing, fmt.Sprintf("TCP connect %s: Success", def.Target)
	}
	method := def.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, def.Target, nil)
	if err != nil {
		return fsm.StatusCritical, err.Error()
	}
	for k, vs := range def.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: def.TLSSkipVerify}} //nolint:gosec // the check's own setting
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		return fsm.StatusCritical, fmt.Sprintf("HTTP %s %s: %v", method, def.Target, err)
	}
	defer resp.Body.Close()
	// The body is not kept: the leader runs every check, and whoever can
	// read the table must not read through it what the leader can reach.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	output := fmt.Sprintf("HTTP %s %s: %s", method, def.Target, resp.Status)
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return fsm.StatusPassing, output
	case resp.StatusCode == http.StatusTooManyRequests:
		return fsm.StatusWarning, output
	}
	return fsm.StatusCritical, output
}

// CheckUpdate is a ttl check's report (Consul's pass, warn, fail and
// update): it renews the check's TTL and sets its status and output,
// through the log only when they change. On a follower it is forwarded to
// the leader, which keeps the deadlines. With a scope, the check's
// instance must be of one of its types (ErrForbidden).
func (n *Node) CheckUpdate(ctx context.Context, checkID, status, output string, scope []string) error {
	if err := invalid(fsm.ValidateID(checkID)); err != nil {
		return err
	}
	if err := invalid(fsm.Validate(fsm.CheckStatusCmd{ID: "x", CheckID: checkID, Status: status, Output: output})); err != nil {
		return err
	}
	_, err := n.CheckUpdateIndex(ctx, checkID, status, output, scope)
	return err
}

// CheckUpdateIndex is CheckUpdate returning the index of the status change
// it committed (0 when nothing changed). This node's next reads reflect
// it, as after any write it forwarded.
func (n *Node) CheckUpdateIndex(ctx context.Context, checkID, status, output string, scope []string) (uint64, error) {
	if err := invalid(fsm.ValidateID(checkID)); err != nil {
		return 0, err
	}
	var idx uint64
	err := n.onLeader(ctx, "check update "+checkID,
		func() (err error) { idx, err = n.checkUpdateLocal(ctx, checkID, status, output, scope); return err },
		func(addr string) (err error) {
			idx, err = n.cfg.Peer.CheckUpdate(ctx, addr, checkID, status, output, scope)
			return err
		})
	if err == nil {
		n.raiseReadFloor(idx)
	}
	return idx, err
}

// CheckUpdateOnLeader is the leader's side of a forwarded report: it never
// forwards again (ErrNotLeader when this node no longer leads), so a
// report cannot bounce between binders.
func (n *Node) CheckUpdateOnLeader(ctx context.Context, checkID, status, output string, scope []string) (uint64, error) {
	if err := invalid(fsm.Validate(fsm.CheckStatusCmd{ID: "x", CheckID: checkID, Status: status, Output: output})); err != nil {
		return 0, err
	}
	if n.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	return n.checkUpdateLocal(ctx, checkID, status, output, scope)
}

func (n *Node) checkUpdateLocal(ctx context.Context, checkID, status, output string, scope []string) (uint64, error) {
	id, ok := n.fsm.CheckOwner(checkID)
	var inst fsm.Instance
	if ok {
		inst, ok = n.fsm.Get(id)
	}
	if !ok {
		return 0, fmt.Errorf("check %q: %w", checkID, ErrUnknownCheck)
	}
	if scope != nil && !slices.Contains(scope, inst.Type) {
		return 0, fmt.Errorf("check %s: type %q: %w", checkID, inst.Type, ErrForbidden)
	}
	def, _ := inst.CheckByID(checkID)
	if def.Kind != fsm.CheckTTL {
		return 0, fmt.Errorf("%w: check %q is not a TTL check", ErrInvalid, checkID)
	}
	n.checks.renew(checkID, id, time.Now())
	if def.Status == status && def.Output == output {
		return 0, nil
	}
	idx, err := n.apply(ctx, fsm.CheckStatusCmd{ID: id, RegIndex: inst.Index, CheckID: checkID, Status: status, Output: output}, true)
	if errors.Is(err, ErrUnknownID) {
		return 0, fmt.Errorf("check %q: %w", checkID, ErrUnknownCheck)
	}
	return idx, err
}
