package binder

import "errors"

var (
	// ErrUnknownService is returned by lookups of a type with no instance.
	ErrUnknownService = errors.New("unknown service type")
	// ErrUnknownID is returned for an id that is not in the table.
	ErrUnknownID = errors.New("unknown service id")
	// ErrInvalid is returned for a request that breaks a validation rule; the
	// message names the field.
	ErrInvalid = errors.New("invalid request")
	// ErrNotLeader is returned by ApplyLocal on a node that is not the
	// leader. The command was not applied.
	ErrNotLeader = errors.New("not the leader")
	// ErrNoLeader is returned when no leader could be reached within the
	// hold timeout. The command was not applied.
	ErrNoLeader = errors.New("no leader")
	// ErrOutcomeUnknown is returned when a write was handed to a leader
	// that failed before answering: it may or may not have been applied.
	ErrOutcomeUnknown = errors.New("write outcome unknown")
	// ErrSuperseded is returned by a removal whose verified registration was
	// replaced meanwhile.
	ErrSuperseded = errors.New("registration superseded")
	// ErrForbidden is returned for a write limited to some service types
	// (Registration.Scope) that would change an instance of another type.
	// The table is unchanged.
	ErrForbidden = errors.New("forbidden")
	// ErrUnknownCheck is returned for a check id no instance has.
	ErrUnknownCheck = errors.New("unknown check id")
	// ErrUpgrading is returned for a write that needs a log format some
	// member of the cluster has not announced yet (an older build is still
	// in the cluster): tags, weights and checks. Nothing was applied.
	ErrUpgrading = errors.New("not every binder applies this yet")
	// ErrShutdown is returned once the node is closing.
	ErrShutdown = errors.New("binder shutting down")
)
