package binder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/lieur/lieur/fsm"
)

// maxBatch bounds how many commands share one log entry; maxInFlight how
// many entries the batcher has in raft at once. While they are in flight
// the next writes queue up and leave together.
const (
	maxBatch    = 256
	maxInFlight = 2
)

type applyReq struct {
	data []byte
	done chan applyRes
}

type applyRes struct {
	index uint64
	err   error
}

// runForwarder sends a follower's writes to the leader the same way the
// leader's batcher applies them: while a request is in flight the next
// writes queue, and leave together in one request.
func (n *Node) runForwarder() {
	defer n.wg.Done()
	n.drain(n.forwardCh, n.forwardInFlight, n.forwardBatch)
}

func (n *Node) forwardBatch(batch []*applyReq) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.WriteHold)
	defer cancel()
	addr, err := n.leaderHTTPAddr()
	if err != nil {
		for _, r := range batch {
			r.done <- applyRes{0, err}
		}
		return
	}
	defer n.abandonOnNewLeader(ctx, cancel, addr)()
	if len(batch) == 1 {
		idx, err := n.cfg.Peer.Apply(ctx, addr, batch[0].data)
		batch[0].done <- applyRes{idx, err}
		return
	}
	cmds := make([][]byte, len(batch))
	for i, r := range batch {
		cmds[i] = r.data
	}
	outs, err := n.cfg.Peer.ApplyBatch(ctx, addr, cmds)
	if err == nil && len(outs) != len(batch) {
		err = fmt.Errorf("%w: leader answered %d results for %d commands", ErrOutcomeUnknown, len(outs), len(batch))
	}
	for i, r := range batch {
		if err != nil {
			r.done <- applyRes{0, err}
			continue
		}
		r.done <- applyRes{outs[i].Index, outs[i].Err}
	}
}

// abandonOnNewLeader cancels a forward to the leader at addr once this
// node knows another leader, and returns the function that stops
// watching. A leader cut off from the network answers nothing: its
// forwards would otherwise hold their slots (and the follower's every
// later write) until the write hold, seconds after a new leader took
// over. The forwarded writes then end with ErrOutcomeUnknown, which
// apply sends again to the new leader when they are idempotent
// (registrations, removals naming a registration's index, a
// deregistration with a request id); others report the unknown outcome,
// as they did after the hold.
func (n *Node) abandonOnNewLeader(ctx context.Context, cancel context.CancelFunc, addr string) (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		for {
			changed, release := n.leaderSeen.watch("")
			if cur, err := n.leaderHTTPAddr(); err == nil && cur != addr {
				release()
				cancel()
				return
			}
			select {
			case <-changed:
				release()
			case <-done:
				release()
				return
			case <-ctx.Done():
				release()
				return
			}
		}
	}()
	return func() { close(done); <-exited }
}

// drain collects requests from ch into batches and runs flush on each,
// with at most cap(slots) batches in flight.
func (n *Node) drain(ch chan *applyReq, slots chan struct{}, flush func([]*applyReq)) {
	for {
		var first *applyReq
		select {
		case <-n.ctx.Done():
			return
		case first = <-ch:
		}
		// Wait for a free slot: meanwhile more writes queue up.
		select {
		case slots <- struct{}{}:
		case <-n.ctx.Done():
			first.done <- applyRes{0, ErrShutdown}
			return
		}
		batch := []*applyReq{first}
	collect:
		for len(batch) < maxBatch {
			select {
			case r := <-ch:
				batch = append(batch, r)
			default:
				break collect
			}
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			defer func() { <-slots }()
			flush(batch)
		}()
	}
}

// runBatcher applies the leader's writes. While one entry is in flight,
// the writes that arrive queue up; the next entry carries all of them
// (a batch/v1 command), so concurrent writes share an append and an
// fsync on every node instead of taking one each.
func (n *Node) runBatcher() {
	defer n.wg.Done()
	n.drain(n.applyCh, n.inFlight, n.flush)
}

func (n *Node) flush(batch []*applyReq) {
	if len(batch) == 1 {
		idx, err := n.raftApply(batch[0].data)
		batch[0].done <- applyRes{idx, err}
		return
	}
	raw := make([]json.RawMessage, len(batch))
	for i, r := range batch {
		raw[i] = r.data
	}
	data, err := fsm.Encode(fsm.BatchCmd{Commands: raw})
	if err != nil {
		for _, r := range batch {
			r.done <- applyRes{0, err}
		}
		return
	}
	f := n.raft.Apply(data, raftApplyTimeout)
	if err := raftError(f.Error()); err != nil {
		for _, r := range batch {
			r.done <- applyRes{0, err}
		}
		return
	}
	br, ok := f.Response().(*fsm.BatchResult)
	if !ok || len(br.Results) != len(batch) {
		for _, r := range batch {
			r.done <- applyRes{0, fmt.Errorf("unexpected fsm response %T", f.Response())}
		}
		return
	}
	for i, r := range batch {
		idx, err := fsmError(br.Results[i])
		r.done <- applyRes{idx, err}
	}
}

// raftApply applies one command as its own log entry.
func (n *Node) raftApply(data []byte) (uint64, error) {
	f := n.raft.Apply(data, raftApplyTimeout)
	if err := raftError(f.Error()); err != nil {
		return 0, err
	}
	res, ok := f.Response().(*fsm.Result)
	if !ok {
		return 0, fmt.Errorf("unexpected fsm response %T", f.Response())
	}
	return fsmError(res)
}

// raftError maps raft's apply errors onto what a caller may conclude.
func raftError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	default:
		// Leadership lost after the entry was appended: it may still
		// commit under the next leader.
		return fmt.Errorf("%w: %v", ErrOutcomeUnknown, err)
	}
}

// fsmError maps the table's refusals onto binder's errors.
func fsmError(res *fsm.Result) (uint64, error) {
	if res.Err == nil {
		return res.Index, nil
	}
	switch {
	case errors.Is(res.Err, fsm.ErrUnknownInstance):
		return res.Index, ErrUnknownID
	case errors.Is(res.Err, fsm.ErrSuperseded):
		return res.Index, fmt.Errorf("%w: %v", ErrSuperseded, res.Err)
	case errors.Is(res.Err, fsm.ErrBadCommand):
		return res.Index, fmt.Errorf("%w: %v", ErrInvalid, res.Err)
	case errors.Is(res.Err, fsm.ErrRequestReused), errors.Is(res.Err, fsm.ErrCheckTaken):
		return res.Index, fmt.Errorf("%w: %v", ErrInvalid, res.Err)
	case errors.Is(res.Err, fsm.ErrOutOfScope):
		return res.Index, fmt.Errorf("%w: %v", ErrForbidden, res.Err)
	}
	return res.Index, res.Err
}
