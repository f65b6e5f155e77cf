package binder

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/lieur/lieur/fsm"
)

// raftApplyTimeout bounds how long a leader waits to enqueue a command.
const raftApplyTimeout = 5 * time.Second

func raftTransport(cfg Config) *raft.NetworkTransport {
	logger := cfg.Logger.Named("raft-net")
	// A pool of connections per peer lets appends, heartbeats and votes
	// proceed side by side.
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  cfg.Stream,
		MaxPool: 3,
		// No pipelined appends. With raft v1.8.0's default of 2, the
		// pipeline's channels are unbuffered, and a follower's refusal
		// (a newer term, a log mismatch) can leave its send and decode
		// goroutines waiting on each other for good: the follower gets
		// heartbeats and no more entries (so it never calls an election
		// and serves ever older reads), and the leader's Shutdown hangs
		// (seen here 2 times in 64 stressed runs; the same analysis as
		// grafana/pyroscope#5518). One append at a time per follower
		// carries whatever queued meanwhile (up to MaxAppendEntries), and
		// measured no slower: docs/benchmarks.md.
		MaxRPCsInFlight: 1,
		Timeout:         10 * time.Second,
		Logger:          logger,
	})
}

// Register validates r, fills in its default id and commits it. It returns
// the id and the index that committed it. With r.Scope, the leader's table
// decides whether the id may be written (ErrForbidden otherwise).
func (n *Node) Register(ctx context.Context, r Registration) (string, uint64, error) {
	if err := r.Normalize(); err != nil {
		return "", 0, err
	}
	// Registering an id again replaces it with the same content, so a
	// registration whose outcome is unknown may be sent again.
	idx, err := n.apply(ctx, fsm.RegisterCmd{ID: r.ID, Type: r.Type, Address: r.Address, Port: r.Port, Meta: r.Meta, TTLMillis: r.TTL.Milliseconds(), Scope: r.Scope,
		Tags: r.Tags, Weights: r.Weights, Checks: r.Checks}, true)
	if err != nil {
		return "", 0, fmt.Errorf("register %s: %w", r.ID, err)
	}
	return r.ID, idx, nil
}

// Deregister removes an instance at its owner's request. With a request id
// the removal is applied once however often it is sent, so it is retried
// when its outcome is unknown; without one it is not. With a scope (the
// types a caller may touch, nil for any), the leader's table refuses an
// instance of another type with ErrForbidden. An id the leader's table
// does not hold is refused with ErrUnknownID without a log entry (see
// leaderGuard), whichever node took the request.
func (n *Node) Deregister(ctx context.Context, id, requestID string, scope []string) (uint64, error) {
	if err := ValidateID(id); err != nil {
		return 0, err
	}
	if err := ValidateRequestID(requestID); err != nil {
		return 0, err
	}
	if err := invalid(fsm.ValidateScope(scope)); err != nil {
		return 0, err
	}
	idx, err := n.apply(ctx, fsm.DeregisterCmd{ID: id, RequestID: requestID, Scope: scope}, requestID != "")
	if err != nil {
		return 0, fmt.Errorf("deregister %s: %w", id, err)
	}
	return idx, nil
}

// ApplyLocalBatch applies a follower's batch on this node, which must be
// the leader: each command as if forwarded alone (the leader's batcher
// puts them in one entry again).
func (n *Node) ApplyLocalBatch(ctx context.Context, commands [][]byte) []Outcome {
	out := make([]Outcome, len(commands))
	var wg sync.WaitGroup
	for i, c := range commands {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].Index, out[i].Err = n.ApplyLocal(ctx, c)
		}()
	}
	wg.Wait()
	return out
}

// ApplyLocal applies an encoded command on this node, which must be the
// leader; it is the receiving end of Peer.Apply. It never forwards, so a
// forwarded write cannot bounce between nodes. A command that does not
// decode or breaks a rule of the table is refused with ErrInvalid before it
// reaches the log; so is a batch, which only the leader's batcher makes.
func (n *Node) ApplyLocal(ctx context.Context, data []byte) (uint64, error) {
	cmd, err := fsm.Decode(data)
	if err == nil {
		err = fsm.Validate(cmd)
	}
	if err == nil {
		if _, batch := cmd.(fsm.BatchCmd); batch {
			err = fmt.Errorf("%w: a batch cannot be forwarded; send its commands", fsm.ErrBadCommand)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	// What goes into the log is what was checked, encoded here, not the
	// bytes as they came.
	return n.admitAndApply(ctx, cmd)
}

// apply commits cmd through the leader: directly when this node leads,
// forwarded otherwise. While there is no leader, or the leader is not
// reachable yet, it retries with jitter up to the hold timeout. It retries
// a command whose outcome is unknown only when the command is idempotent.
func (n *Node) apply(ctx context.Context, cmd fsm.Command, idempotent bool) (uint64, error) {
	if err := fsm.Validate(cmd); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	// Checked here too, not only by the leader: a leader of an older
	// build would drop what it does not know (tags, checks) and answer 200.
	if need := formatNeeded(cmd); need > 1 && n.clusterFormat() < need {
		return 0, fmt.Errorf("%w: log format %d needed, the cluster is at %d (a member runs an older build)", ErrUpgrading, need, n.clusterFormat())
	}
	data, err := fsm.Encode(cmd)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.WriteHold)
	defer cancel()
	var last error
	unknown := false // some attempt may have been applied
	for attempt := 1; ; attempt++ {
		if n.ctx.Err() != nil {
			return 0, ErrShutdown
		}
		leaderChange, release := n.leaderSeen.watch("")
		var idx uint64
		if n.raft.State() == raft.Leader {
			idx, err = n.admitAndApply(ctx, cmd)
		} else {
			idx, err = n.forward(ctx, data)
			if err == nil || errors.Is(err, ErrUnknownID) || errors.Is(err, ErrSuperseded) {
				n.raiseReadFloor(idx)
			}
		}
		retry := errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader) || (idempotent && errors.Is(err, ErrOutcomeUnknown))
		if err == nil || !retry {
			release()
			return idx, err
		}
		last = err
		unknown = unknown || errors.Is(err, ErrOutcomeUnknown)
		woke := n.waitLeaderChange(ctx, leaderChange, backoff(attempt))
		release()
		if !woke {
			if unknown {
				return 0, fmt.Errorf("%w: gave up after %s: %v", ErrOutcomeUnknown, n.cfg.WriteHold, last)
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return 0, fmt.Errorf("%w after %s: %v", ErrNoLeader, n.cfg.WriteHold, last)
			}
			return 0, fmt.Errorf("%w: %v", ctx.Err(), last)
		}
	}
}

// waitLeaderChange sleeps d, or less if raft observes a new leader
// meanwhile. It reports false when ctx ended.
func (n *Node) waitLeaderChange(ctx context.Context, changed <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-changed:
		return true
	case <-ctx.Done():
		return false
	}
}

// raiseReadFloor makes this node's next reads reflect a write it
// forwarded. The write's answer does not wait for this node to apply it:
// a follower learns of a commit only with the leader's next append, up to
// two commit timeouts later, which would multiply a lone writer's latency.
// Instead the reads that follow wait, and only if they come that soon.
func (n *Node) raiseReadFloor(index uint64) {
	for {
		cur := n.readFloor.Load()
		if index <= cur || n.readFloor.CompareAndSwap(cur, index) {
			return
		}
	}
}

// atReadFloor waits, up to a second, until this node has applied every
// write it forwarded, so that it reads its own writes.
func (n *Node) atReadFloor() {
	floor := n.readFloor.Load()
	if n.fsm.Applied() >= floor {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, time.Second)
	defer cancel()
	n.WaitApplied(ctx, floor)
}

// forward hands a command to the forwarder (see runForwarder).
func (n *Node) forward(ctx context.Context, data []byte) (uint64, error) {
	return n.submit(ctx, n.forwardCh, data)
}

// applyLeader hands a command to the batcher (see runBatcher).
func (n *Node) applyLeader(data []byte) (uint64, error) {
	return n.submit(context.Background(), n.applyCh, data)
}

// submit queues a command for a batching loop and waits for its answer.
func (n *Node) submit(ctx context.Context, ch chan *applyReq, data []byte) (uint64, error) {
	req := &applyReq{data: data, done: make(chan applyRes, 1)}
	select {
	case ch <- req:
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: %v", ErrNoLeader, ctx.Err())
	case <-n.ctx.Done():
		return 0, ErrShutdown
	}
	select {
	case res := <-req.done:
		return res.index, res.err
	case <-n.ctx.Done():
		// The loops stop with the node; a command they took may still
		// have reached the log.
		return 0, fmt.Errorf("%w: node stopping", ErrOutcomeUnknown)
	}
}
