package fsm

import (
	"fmt"

	"github.com/hashicorp/raft"
)

// Apply applies one committed log entry. It returns a *Result, or a
// *BatchResult for a batch. A command that does not decode or breaks a
// rule of Validate is refused with an error wrapping ErrBadCommand and
// changes nothing; so is each such command of a batch.
func (f *FSM) Apply(l *raft.Log) interface{} {
	cmd, err := Decode(l.Data)
	if err == nil {
		err = Validate(cmd)
	}
	if err != nil {
		f.applied.Store(l.Index)
		return &Result{Index: l.Index, Err: err}
	}
	if b, ok := cmd.(BatchCmd); ok {
		return f.applyBatch(l.Index, b)
	}
	return f.ApplyCommand(l.Index, cmd)
}

// applyBatch applies every command of a batch under one lock, so readers
// see all of the entry or none of it, then tells the observer once.
func (f *FSM) applyBatch(index uint64, b BatchCmd) *BatchResult {
	out := &BatchResult{Results: make([]*Result, len(b.Commands))}
	cmds := make([]Command, len(b.Commands))
	for i, raw := range b.Commands {
		cmd, err := Decode(raw)
		if err == nil {
			if _, nested := cmd.(BatchCmd); nested {
				err = fmt.Errorf("%w: nested batch", ErrBadCommand)
			} else if _, restore := cmd.(RestoreCmd); restore {
				// It replaces the whole table: the leader writes it
				// alone, never among other writes.
				err = fmt.Errorf("%w: a restore is an entry of its own, not part of a batch", ErrBadCommand)
			} else {
				err = Validate(cmd)
			}
		}
		if err != nil {
			out.Results[i] = &Result{Index: index, Err: err}
			continue
		}
		cmds[i] = cmd
	}
	var changes []Change
	f.mu.Lock()
	for i, cmd := range cmds {
		if cmd == nil {
			continue
		}
		out.Results[i], changes = f.applyLocked(index, cmd, changes)
	}
	f.mu.Unlock()
	f.publish(index, changes)
	return out
}

// ApplyCommand applies a decoded command at the given index, refusing one
// that Validate refuses. Apply uses it; it is exported for tests and
// benchmarks that skip the log.
func (f *FSM) ApplyCommand(index uint64, cmd Command) *Result {
	if err := Validate(cmd); err != nil {
		f.applied.Store(index)
		return &Result{Index: index, Err: err}
	}
	if _, nested := cmd.(BatchCmd); nested {
		f.applied.Store(index)
		return &Result{Index: index, Err: fmt.Errorf("%w: a batch is applied through Apply", ErrBadCommand)}
	}
	if c, ok := cmd.(RestoreCmd); ok {
		return f.applyRestore(index, c)
	}
	f.mu.Lock()
	res, changes := f.applyLocked(index, cmd, nil)
	f.mu.Unlock()
	f.publish(index, changes)
	return res
}

// publish makes index visible as applied, then tells the observer what
// the entry changed: by the time a waiter wakes, the table and Applied
// both reflect the whole entry.
func (f *FSM) publish(index uint64, changes []Change) {
	f.applied.Store(index)
	if len(changes) > 0 {
		f.observe(index, changes)
	}
}

// applyLocked applies a validated command and appends its changes. f.mu
// must be held.
func (f *FSM) applyLocked(index uint64, cmd Command, changes []Change) (*Result, []Change) {
	res := &Result{Index: index}
	rid, target := requestID(cmd)
	if rid != "" {
		if first, dup := f.requests.seen(rid); dup {
			if first.target != "" && first.target != target {
				// The key of another request: answering with its index
				// would tell the caller this one was applied.
				return &Result{Index: index, Err: fmt.Errorf("request id %q was used for %q, not %q: %w", rid, first.target, target, ErrRequestReused)}, changes
			}
			return &Result{Index: first.index}, changes
		}
	}
	switch c := cmd.(type) {
	case RegisterCmd:
		old := f.byID[c.ID]
		if owner, taken := f.checkTakenLocked(c.ID, c.Checks); taken {
			res.Err = fmt.Errorf("%w: register %q: check id %q belongs to %q", ErrCheckTaken, c.ID, owner.check, owner.id)
			break
		}
		if !inScope(c.Scope, c.Type) || (old != nil && !inScope(c.Scope, old.Type)) {
			typ := c.Type
			if inScope(c.Scope, typ) {
				typ = old.Type
			}
			res.Err = fmt.Errorf("register %q: type %q: %w", c.ID, typ, ErrOutOfScope)
			break
		}
		inst := &Instance{ID: c.ID, Type: c.Type, Address: c.Address, Port: c.Port, Meta: c.Meta, Index: index, TTLMillis: c.TTLMillis,
			Tags: c.Tags, Weights: c.Weights, Checks: c.Checks, encoded: &encodedCache{}}
		normalize(inst)
		switch {
		case old != nil && old.Type == c.Type:
			// The type keeps its instance: it does not vanish meanwhile.
			f.replaceLocked(old, inst, index)
		case old != nil:
			f.unlinkLocked(old, index)
			f.linkLocked(inst, index)
		default:
			f.linkLocked(inst, index)
		}
		ch := Change{Kind: Added, Instance: *inst, Index: index}
		if old != nil {
			o := *old
			ch.Replaced = &o
		}
		changes = append(changes, ch)
	case DeregisterCmd:
		old := f.byID[c.ID]
		switch {
		case old == nil:
			res.Err = fmt.Errorf("deregister %q: %w", c.ID, ErrUnknownInstance)
		case !inScope(c.Scope, old.Type):
			res.Err = fmt.Errorf("deregister %q: type %q: %w", c.ID, old.Type, ErrOutOfScope)
		default:
			f.unlinkLocked(old, index)
			changes = append(changes, Change{Kind: Removed, Instance: *old, Reason: ReasonDeregistered, Index: index})
		}
	case RemoveCmd:
		old := f.byID[c.ID]
		switch {
		case old == nil:
			res.Err = fmt.Errorf("remove %q: %w", c.ID, ErrUnknownInstance)
		case old.Index != c.RegIndex:
			res.Err = fmt.Errorf("remove %q verified at index %d, now at %d: %w", c.ID, c.RegIndex, old.Index, ErrSuperseded)
		default:
			f.unlinkLocked(old, index)
			reason := c.Reason
			if reason == "" {
				reason = ReasonReportedDown
			}
			changes = append(changes, Change{Kind: Removed, Instance: *old, Reason: reason, Index: index})
		}
	case NodeMetaCmd:
		f.nodes[c.NodeID] = c.HTTPAddr
		if c.Format > 1 {
			f.formats[c.NodeID] = c.Format
		} else {
			delete(f.formats, c.NodeID)
		}
	case NodeForgetCmd:
		delete(f.nodes, c.NodeID)
		delete(f.formats, c.NodeID)
	case ClusterIDCmd:
		if f.clusterID == "" {
			f.clusterID = c.ClusterID
		}
	case CheckStatusCmd:
		old := f.byID[c.ID]
		switch {
		case old == nil:
			res.Err = fmt.Errorf("check status %q: %w", c.ID, ErrUnknownInstance)
		case old.Index != c.RegIndex:
			res.Err = fmt.Errorf("check status %q for index %d, now at %d: %w", c.ID, c.RegIndex, old.Index, ErrSuperseded)
		default:
			pos := -1
			for i, ch := range old.Checks {
				if ch.ID == c.CheckID {
					pos = i
				}
			}
			if pos < 0 {
				res.Err = fmt.Errorf("check %q of %q: %w", c.CheckID, c.ID, ErrUnknownInstance)
				break
			}
			if old.Checks[pos].Status == c.Status && old.Checks[pos].Output == c.Output {
				break // already so
			}
			next := *old
			next.encoded = &encodedCache{}
			next.Checks = append([]Check(nil), old.Checks...)
			next.Checks[pos].Status, next.Checks[pos].Output = c.Status, c.Output
			f.replaceLocked(old, &next, index)
			changes = append(changes, Change{Kind: HealthChanged, Instance: next, Index: index})
		}
	case LeaseStateCmd:
		old := f.byID[c.ID]
		switch {
		case old == nil:
			res.Err = fmt.Errorf("lease state %q: %w", c.ID, ErrUnknownInstance)
		case old.Index != c.RegIndex:
			res.Err = fmt.Errorf("lease state %q for index %d, now at %d: %w", c.ID, c.RegIndex, old.Index, ErrSuperseded)
		case c.Stale == (old.Health == HealthStaleLease):
			// Already so: nothing changes.
		default:
			next := *old
			next.encoded = &encodedCache{}
			if c.Stale {
				next.Health = HealthStaleLease
			} else {
				next.Health = ""
				next.Flaps++
			}
			f.replaceLocked(old, &next, index)
			changes = append(changes, Change{Kind: HealthChanged, Instance: next, Index: index})
		}
	default:
		res.Err = fmt.Errorf("%w: unhandled %T", ErrBadCommand, cmd)
	}
	if rid != "" && res.Err == nil {
		f.requests.add(rid, remembered{index: index, target: target})
	}
	return res, changes
}

// inScope reports whether a write limited to scope (nil: any type) may
// touch an instance of typ.
func inScope(scope []string, typ string) bool {
	if scope == nil {
		return true
	}
	for _, t := range scope {
		if t == typ {
			return true
		}
	}
	return false
}

// requestID returns a command's idempotency key and the instance id it
// names.
func requestID(cmd Command) (rid, target string) {
	switch c := cmd.(type) {
	case DeregisterCmd:
		return c.RequestID, c.ID
	case RemoveCmd:
		return c.RequestID, c.ID
	}
	return "", ""
}

// replaceLocked swaps an instance for a new version of itself (same id and
// type).
func (f *FSM) replaceLocked(old, next *Instance, index uint64) {
	f.indexChecksLocked(old, next)
	f.byID[next.ID] = next
	ts := f.byType[next.Type]
	ts.members[next.ID] = next
	ts.view.Store(nil)
	f.touchLocked(next.Type, index)
}

// linkLocked inserts inst.
func (f *FSM) linkLocked(inst *Instance, index uint64) {
	f.indexChecksLocked(nil, inst)
	f.byID[inst.ID] = inst
	ts := f.byType[inst.Type]
	if ts == nil {
		ts = &typeSet{members: map[string]*Instance{}}
		f.byType[inst.Type] = ts
	}
	ts.members[inst.ID] = inst
	ts.view.Store(nil)
	f.touchLocked(inst.Type, index)
}

func (f *FSM) unlinkLocked(inst *Instance, index uint64) {
	f.indexChecksLocked(inst, nil)
	delete(f.byID, inst.ID)
	if ts := f.byType[inst.Type]; ts != nil {
		delete(ts.members, inst.ID)
		ts.view.Store(nil)
		if len(ts.members) == 0 {
			delete(f.byType, inst.Type)
			delete(f.typeIndex, inst.Type)
			f.vanished = index
			f.lastChange = index
			return
		}
	}
	f.touchLocked(inst.Type, index)
}

func (f *FSM) touchLocked(typ string, index uint64) {
	f.typeIndex[typ] = index
	f.lastChange = index
}
