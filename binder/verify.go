package binder

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/lieur/lieur/fsm"
)

// Verdict is the outcome of a down-report.
type Verdict string

// Verdicts of a down-report.
const (
	// VerdictRemoved: the instance did not answer and was removed from
	// every binder (or was already gone).
	VerdictRemoved Verdict = "removed"
	// VerdictAlive: the instance answered; it stays.
	VerdictAlive Verdict = "alive"
	// VerdictUnknown: the probe failed but the removal could not be
	// committed (no leader), or the id was registered again meanwhile.
	VerdictUnknown Verdict = "unknown"
)

type verification struct {
	done    chan struct{}
	verdict Verdict
	index   uint64 // of the removal
}

// Report handles a client's report that it could not reach instance id.
// The node probes the registered address:port; an instance that does not
// answer is removed through the log, naming the registration it probed.
// Reports of an id already being verified wait for that verification
// instead of starting another probe. The probe runs apart from lookups and
// other requests, which it never holds up.
//
// It returns the verdict and, for a removal, the index that committed it.
func (n *Node) Report(ctx context.Context, id string) (Verdict, uint64, error) {
	if err := ValidateID(id); err != nil {
		return "", 0, err
	}
	// A resent report needs no key: it joins the running verification, or
	// finds the instance removed recently, or probes again.
	n.atReadFloor()
	inst, ok := n.fsm.Get(id)
	if !ok {
		// This node may lag: before answering about an id it does not
		// hold, catch up with the leader, so that "removed" means the id
		// really is gone and "unknown id" is not a stale answer. Without
		// a leader there is no answer to give, only a guess. Not strict:
		// a report of an unknown id must not cost a log entry.
		if err := n.consistentRead(ctx, false); err != nil {
			return "", 0, fmt.Errorf("report %s: this node does not hold it and cannot check with the leader: %w", id, err)
		}
		inst, ok = n.fsm.Get(id)
	}
	if !ok {
		if n.removedRecently(id) {
			return VerdictRemoved, 0, nil
		}
		return "", 0, fmt.Errorf("report %s: %w", id, ErrUnknownID)
	}
	n.verifyMu.Lock()
	v, running := n.verifying[id]
	if !running {
		v = &verification{done: make(chan struct{})}
		n.verifying[id] = v
		n.wg.Add(1)
		go n.verify(inst, v)
	}
	n.verifyMu.Unlock()
	select {
	case <-v.done:
		return v.verdict, v.index, nil
	case <-ctx.Done():
		return "", 0, fmt.Errorf("report %s: %w", id, ctx.Err())
	}
}

// verify runs on its own context, not a caller's: callers that joined it
// must get an answer even if the first reporter went away.
func (n *Node) verify(inst fsm.Instance, v *verification) {
	defer n.wg.Done()
	defer func() {
		n.metrics.verdicts.WithLabelValues(string(v.verdict)).Inc()
		n.verifyMu.Lock()
		delete(n.verifying, inst.ID)
		n.verifyMu.Unlock()
		close(v.done)
	}()
	budget := time.Duration(n.cfg.ProbeAttempts)*(n.cfg.ProbeTimeout+probePause) + n.cfg.WriteHold
	ctx, cancel := context.WithTimeout(n.ctx, budget)
	defer cancel()

	addr := joinHostPort(inst.Address, inst.Port)
	n.log.Info("verifying report", "id", inst.ID, "addr", addr)
	perr := probe(ctx, addr, n.cfg.ProbeTimeout, n.cfg.ProbeAttempts)
	if perr == nil {
		n.log.Info("report verified: instance alive", "id", inst.ID, "addr", addr)
		v.verdict = VerdictAlive
		return
	}
	if n.cutOff(ctx, inst.ID) {
		n.holdUntil.Store(time.Now().Add(holdWindow).UnixNano())
		n.log.Warn("holding removals: this binder reaches none of the other instances it probed; it may be the one cut off",
			"id", inst.ID, "instances", n.fsm.Len())
		v.verdict = VerdictUnknown
		return
	}
	// Naming the registration makes the removal idempotent: a resend that
	// finds it gone or replaced changes nothing.
	idx, err := n.apply(ctx, fsm.RemoveCmd{ID: inst.ID, RegIndex: inst.Index, Reason: fsm.ReasonReportedDown}, true)
	if err == nil {
		v.index = idx
	}
	switch {
	case err == nil, errors.Is(err, ErrUnknownID):
		n.log.Info("report verified: instance down", "id", inst.ID, "addr", addr, "probe_error", perr)
		v.verdict = VerdictRemoved
	default:
		n.log.Warn("report: instance down but not removed", "id", inst.ID, "addr", addr, "error", err)
		v.verdict = VerdictUnknown
	}
}

const probePause = 100 * time.Millisecond

// probe reports whether something accepts TCP connections at addr, making
// up to attempts connection attempts of at most timeout each.
func probe(ctx context.Context, addr string, timeout time.Duration, attempts int) error {
	var last error
	for i := 0; i < attempts; i++ {
		if i > 0 && !sleepCtx(ctx, probePause) {
			break
		}
		d := net.Dialer{Timeout: timeout}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		last = err
	}
	if last == nil {
		last = ctx.Err()
	}
	return fmt.Errorf("probe %s: %w", addr, last)
}

// crossCheckSample is how many other instances a failed probe is checked
// against before a removal (one per type first, so the sample spans
// types); with at least crossCheckMin of them probed and none answering,
// the removal is held.
const (
	crossCheckSample = 8
	crossCheckMin    = 3
)

// holdWindow is how long /v1/status reports a verification hold.
const holdWindow = 30 * time.Second

// cutOff checks whether this binder, rather than the instance, is cut off:
// it probes a few other instances, of as many types as it can, and reports
// true when at least crossCheckMin were probed and none answered. A single
// dead server, or two, is removed at once: with fewer than crossCheckMin
// other instances there is nothing to compare with.
func (n *Node) cutOff(ctx context.Context, except string) bool {
	all, _ := n.fsm.All()
	var others []fsm.Instance
	seenType := map[string]bool{}
	// One per type first, then the rest, so the sample spans types.
	for _, inst := range all {
		if inst.ID != except && !seenType[inst.Type] {
			seenType[inst.Type] = true
			others = append(others, inst)
		}
	}
	for _, inst := range all {
		if len(others) >= crossCheckSample {
			break
		}
		if inst.ID != except && !containsID(others, inst.ID) {
			others = append(others, inst)
		}
	}
	if len(others) > crossCheckSample {
		others = others[:crossCheckSample]
	}
	if len(others) < crossCheckMin {
		return false
	}
	answered := make(chan bool, len(others))
	for _, inst := range others {
		go func() {
			answered <- probe(ctx, joinHostPort(inst.Address, inst.Port), n.cfg.ProbeTimeout, 1) == nil
		}()
	}
	alive := 0
	for range others {
		if <-answered {
			alive++
		}
	}
	return alive == 0
}

func containsID(list []fsm.Instance, id string) bool {
	for _, i := range list {
		if i.ID == id {
			return true
		}
	}
	return false
}
