package binder

import (
	"context"
	"fmt"
	"slices"

	"github.com/lieur/lieur/fsm"
)

// admitAndApply is the leader's last step before the log, for its own
// commands and for those followers forward: it refuses what need not reach
// the log (admit), writes the command in the cluster's format, and hands
// it to the batcher.
func (n *Node) admitAndApply(ctx context.Context, cmd fsm.Command) (uint64, error) {
	cmd, err := n.admit(ctx, cmd)
	if err != nil {
		return 0, err
	}
	data, err := fsm.Encode(cmd)
	if err != nil {
		return 0, err
	}
	return n.applyLeader(data)
}

// admit checks a valid command against the leader's table before it
// reaches the log:
//
//   - a deregistration of an id the table does not hold is refused with
//     ErrUnknownID: a flood of bogus deregistrations must not grow the log.
//     A resend whose request id the table remembers for that id goes
//     through (the table answers it with the first index); a fresh request
//     id, or one used for another instance, is no pass;
//   - a write limited to some types (a scope) that would touch an instance
//     of another type is refused with ErrForbidden.
//
// Before refusing, the leader confirms it still leads and has applied its
// first barrier of the term (ReadIndex): only then does its table hold
// every acknowledged write. A write that goes through needs no such check:
// the log decides it.
//
// It returns the command to write: with its scope while every member
// applies scopes (log format 2), without it before (the check here is
// then the only one; an older build would ignore the scope and the tables
// would differ).
func (n *Node) admit(ctx context.Context, cmd fsm.Command) (fsm.Command, error) {
	if need := formatNeeded(cmd); need > 1 && n.clusterFormat() < need {
		return nil, fmt.Errorf("%w: log format %d needed, the cluster is at %d (a member runs an older build)", ErrUpgrading, need, n.clusterFormat())
	}
	refuse := n.refusal(cmd)
	if refuse != nil {
		if _, err := n.readIndex(ctx, false); err != nil {
			return nil, err
		}
		if refuse = n.refusal(cmd); refuse != nil {
			return nil, refuse
		}
	}
	if n.clusterFormat() >= 2 {
		return cmd, nil
	}
	switch c := cmd.(type) {
	case fsm.RegisterCmd:
		c.Scope = nil
		return c, nil
	case fsm.DeregisterCmd:
		c.Scope = nil
		return c, nil
	}
	return cmd, nil
}

// formatNeeded is the log format a command needs every member to apply
// before the leader may write it (a scope alone does not: it can be
// checked here instead).
func formatNeeded(cmd fsm.Command) int {
	switch c := cmd.(type) {
	case fsm.RegisterCmd:
		if c.Tags != nil || c.Weights != nil || c.Checks != nil {
			return 3
		}
	case fsm.CheckStatusCmd:
		return 3
	case fsm.RestoreCmd:
		return restoreFormat
	case fsm.ClusterIDCmd:
		return 2
	}
	return 1
}

// refusal is why the leader's table refuses cmd now, or nil. Callers say
// what was refused ("deregister ID: ...").
func (n *Node) refusal(cmd fsm.Command) error {
	switch c := cmd.(type) {
	case fsm.RegisterCmd:
		if c.Scope == nil {
			return nil
		}
		if !slices.Contains(c.Scope, c.Type) {
			return fmt.Errorf("type %q: %w", c.Type, ErrForbidden)
		}
		if old, held := n.fsm.Get(c.ID); held && !slices.Contains(c.Scope, old.Type) {
			return fmt.Errorf("held under type %q: %w", old.Type, ErrForbidden)
		}
	case fsm.DeregisterCmd:
		old, held := n.fsm.Get(c.ID)
		switch {
		case held && c.Scope != nil && !slices.Contains(c.Scope, old.Type):
			return fmt.Errorf("type %q: %w", old.Type, ErrForbidden)
		case !held && (c.RequestID == "" || !n.fsm.RequestAppliedTo(c.RequestID, c.ID)):
			return ErrUnknownID
		}
	}
	return nil
}

// clusterFormat is the newest log format every member of the Raft
// configuration has announced it applies (fsm.LogFormat); 1 while any
// has not.
func (n *Node) clusterFormat() int {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 1
	}
	format := fsm.LogFormat
	for _, s := range f.Configuration().Servers {
		format = min(format, n.fsm.NodeFormat(string(s.ID)))
	}
	return format
}
