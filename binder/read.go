package binder

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/lieur/lieur/fsm"
)

// Lookup returns one instance of typ, chosen round-robin by this node's
// cursor for the type, from local memory. It never touches Raft. Instances
// flagged stale-lease are handed out only when no other is left.
func (n *Node) Lookup(typ string) (fsm.Instance, error) {
	n.atReadFloor()
	list := n.fsm.HealthyOf(typ)
	if len(list) == 0 {
		return fsm.Instance{}, fmt.Errorf("%w %q", ErrUnknownService, typ)
	}
	i := n.cursor(typ).Add(1) - 1
	return *list[i%uint64(len(list))], nil
}

// CheckOwner returns the instance that has check checkID, as this node
// knows it.
func (n *Node) CheckOwner(checkID string) (fsm.Instance, bool) {
	id, ok := n.fsm.CheckOwner(checkID)
	if !ok {
		return fsm.Instance{}, false
	}
	return n.fsm.Get(id)
}

// TypeOf returns the type of instance id, as this node knows it.
func (n *Node) TypeOf(id string) (string, bool) {
	inst, ok := n.fsm.Get(id)
	return inst.Type, ok
}

// TypeIndex is the index of the last change to typ, once this node has
// applied the writes it forwarded (as every read does): an answer cached
// under that index is then as fresh as a read.
func (n *Node) TypeIndex(typ string) uint64 {
	n.atReadFloor()
	_, idx := n.fsm.InstancesOf(typ)
	return idx
}

// LookupWait is Lookup, except that when the type has no instance it waits
// until one appears or ctx ends.
func (n *Node) LookupWait(ctx context.Context, typ string) (fsm.Instance, error) {
	n.metrics.waiters.Inc()
	defer n.metrics.waiters.Dec()
	for {
		changed, release := n.changes.watch(typ)
		inst, err := n.Lookup(typ)
		if err == nil {
			release()
			return inst, nil
		}
		select {
		case <-changed:
			release()
		case <-ctx.Done():
			release()
			return fsm.Instance{}, err
		case <-n.ctx.Done():
			release()
			return fsm.Instance{}, err
		}
	}
}

// Services returns every instance sorted by type then id, and the index of
// the last change to the table.
func (n *Node) Services() ([]fsm.Instance, uint64) {
	n.atReadFloor()
	return n.fsm.All()
}

// ServicesOf returns the type's instances sorted by id and the index of the
// last change to the type (kept after the type empties, so blocking
// queries on a vanished type still make progress).
func (n *Node) ServicesOf(typ string) ([]fsm.Instance, uint64) {
	n.atReadFloor()
	list, idx := n.fsm.InstancesOf(typ)
	out := make([]fsm.Instance, len(list))
	for i, p := range list {
		out[i] = *p
	}
	return out, idx
}

// WaitIndex blocks until the index of typ ("" for the whole table) passes
// after, or ctx ends. It reports whether the index passed.
func (n *Node) WaitIndex(ctx context.Context, typ string, after uint64) bool {
	n.metrics.waiters.Inc()
	defer n.metrics.waiters.Dec()
	for {
		changed, release := n.changes.watch(typ)
		var idx uint64
		if typ == "" {
			idx = n.fsm.LastChange()
		} else {
			_, idx = n.fsm.InstancesOf(typ)
		}
		if idx > after {
			release()
			return true
		}
		select {
		case <-changed:
			release()
		case <-ctx.Done():
			release()
			return false
		case <-n.ctx.Done():
			release()
			return false
		}
	}
}

// WaitApplied waits until this node's table reflects the command at index,
// or ctx ends. It reports whether the index was reached. index must be a
// command's index, as every index the API hands out is.
func (n *Node) WaitApplied(ctx context.Context, index uint64) bool {
	for n.fsm.Applied() < index {
		if !sleepCtx(ctx, 2*time.Millisecond) {
			return false
		}
	}
	return true
}

func joinHostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// Footprint counts what a node keeps per service-type name. None of it may
// grow with names that are only asked about: a flood of lookups of made-up
// types must leave nothing behind.
type Footprint struct {
	WaitNames int // names someone is waiting on right now
	Cursors   int // round-robin cursors (types looked up and still held)
	Types     int // types the table holds
}

// Footprint returns the node's current footprint.
func (n *Node) Footprint() Footprint {
	cursors := 0
	n.cursors.Range(func(any, any) bool { cursors++; return true })
	return Footprint{WaitNames: n.changes.size(), Cursors: cursors, Types: n.fsm.TypeCount()}
}
