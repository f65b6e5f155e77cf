package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Command type tags. A tag names a command and its format version; a new
// format gets a new tag so old logs still replay exactly as they did.
const (
	TagRegister   = "register/v1"
	TagDeregister = "deregister/v1"
	TagRemove     = "remove/v1"
	TagNodeMeta   = "node-meta/v1"
	TagNodeForget = "node-forget/v1"
	TagLeaseState = "lease-state/v1"
	TagBatch      = "batch/v1"
	TagClusterID  = "cluster-id/v1"
	// TagCheckStatus sets a check's status (log format 3).
	TagCheckStatus = "check-status/v1"
)

// Reasons recorded when an instance leaves the table.
const (
	ReasonDeregistered = "deregistered"
	ReasonReportedDown = "reported-down"
	ReasonExpired      = "expired"
)

var (
	// ErrUnknownInstance is returned when a command names an id that is not
	// in the table.
	ErrUnknownInstance = errors.New("unknown service id")
	// ErrSuperseded is returned by a removal whose verified registration has
	// since been replaced by a newer registration of the same id.
	ErrSuperseded = errors.New("registration superseded")
	// ErrBadCommand is returned for a log entry that cannot be decoded,
	// names an unknown command type, or breaks a rule of Validate.
	ErrBadCommand = errors.New("bad command")
	// ErrRequestReused is returned for a command whose request id the
	// table remembers from a command naming another instance.
	ErrRequestReused = errors.New("request id already used for another instance")
	// ErrOutOfScope is returned for a write limited to some service types
	// (a register token bound to types) that would change an instance of
	// another type.
	ErrOutOfScope = errors.New("out of the caller's scope")
)

// Command is one change to the table. Implementations are the *Cmd types in
// this package.
type Command interface {
	Tag() string
}

// RegisterCmd adds an instance, or replaces the instance with the same id.
type RegisterCmd struct {
	ID      string            `json:"id"`
	Type    string            `json:"type"`
	Address string            `json:"address"`
	Port    int               `json:"port"`
	Meta    map[string]string `json:"meta,omitempty"`
	// TTLMillis, when positive, makes the registration a lease the owner
	// renews by heartbeats (kept in the leader's memory, not in the log).
	TTLMillis int64 `json:"ttl_ms,omitempty"`
	// Scope, when not nil, limits the registration to instances of these
	// types: it may not create one of another type, nor replace an id that
	// the table holds under another type. It is decided here, against the
	// replicated table, whichever binder took the request. Not omitted
	// when empty: an empty scope (nothing allowed) must not come back as
	// nil (anything allowed).
	Scope []string `json:"scope"`
	// Tags, Weights and Checks (log format 3): see Instance. A check's
	// Status is its initial status.
	Tags    []string `json:"tags,omitempty"`
	Weights *Weights `json:"weights,omitempty"`
	Checks  []Check  `json:"checks,omitempty"`
}

// DeregisterCmd removes an instance at its owner's request.
type DeregisterCmd struct {
	ID string `json:"id"`
	// RequestID, when set, makes the command idempotent: a command with a
	// request id already applied changes nothing and answers the first
	// one's index, so a client may resend a deregistration whose outcome it
	// could not know.
	RequestID string `json:"request_id,omitempty"`
	// Scope: as in RegisterCmd; the id's type must be one of them.
	Scope []string `json:"scope"`
}

// RemoveCmd removes an instance that a binder verified as unreachable.
// RegIndex names the registration that was probed: if the id has been
// registered again since (a different index), the removal is refused, so a
// slow probe never deletes a newer registration.
type RemoveCmd struct {
	ID       string `json:"id"`
	RegIndex uint64 `json:"reg_index"`
	Reason   string `json:"reason"`
	// RequestID: as in DeregisterCmd.
	RequestID string `json:"request_id,omitempty"`
}

// NodeMetaCmd records a binder's HTTP address so that every node can reach
// every other (for forwarding writes to the leader), and the newest log
// format its build applies (see LogFormat; absent: 1).
type NodeMetaCmd struct {
	NodeID   string `json:"node_id"`
	HTTPAddr string `json:"http_addr"`
	Format   int    `json:"format,omitempty"`
}

// LogFormat is the newest log format this build applies:
//
//  1. the v1 commands;
//  2. cluster-id/v1, and the scope of register/v1 and deregister/v1;
//  3. tags, weights and checks on register/v1, and check-status/v1;
//  4. restore/v1.
//
// A build ignores what it does not know of a later format (a scope it
// would not check, a command it would refuse), so the leader writes a
// format only once every member has announced a build that applies it
// (binder's cluster format); until then it writes what all of them apply
// alike. Once a cluster uses a format, a build that predates it must not
// join it.
const LogFormat = 4

// LeaseStateCmd flags a lease whose deadline passed but whose instance still
// answered a probe (Stale), or clears the flag when it heartbeats again.
// RegIndex names the registration, as in RemoveCmd. Going back from stale
// to healthy counts one flap.
type LeaseStateCmd struct {
	ID       string `json:"id"`
	RegIndex uint64 `json:"reg_index"`
	Stale    bool   `json:"stale"`
}

// BatchCmd carries several encoded commands in one log entry, applied in
// order at that entry's index. The leader batches concurrent writes so
// that they share one append and one fsync. A batch never nests.
type BatchCmd struct {
	Commands []json.RawMessage `json:"commands"`
}

// NodeForgetCmd drops a binder's metadata when it leaves the cluster.
type NodeForgetCmd struct {
	NodeID string `json:"node_id"`
}

// ClusterIDCmd names the cluster: a random id the first leader draws,
// which binders send each other to prove they belong to it. The first one
// applied stays; later ones change nothing.
type ClusterIDCmd struct {
	ClusterID string `json:"cluster_id"`
}

func (RegisterCmd) Tag() string   { return TagRegister }
func (DeregisterCmd) Tag() string { return TagDeregister }
func (RemoveCmd) Tag() string     { return TagRemove }
func (NodeMetaCmd) Tag() string   { return TagNodeMeta }
func (NodeForgetCmd) Tag() string { return TagNodeForget }
func (LeaseStateCmd) Tag() string { return TagLeaseState }
func (BatchCmd) Tag() string      { return TagBatch }
func (ClusterIDCmd) Tag() string  { return TagClusterID }

type envelope struct {
	Type string          `json:"type"`
	Body json.RawMessage `json:"body"`
}

// Encode serialises a command for the Raft log.
func Encode(c Command) ([]byte, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", c.Tag(), err)
	}
	return json.Marshal(envelope{Type: c.Tag(), Body: body})
}

// Decode parses a log entry produced by Encode.
func Decode(data []byte) (Command, error) {
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	switch env.Type {
	case TagRegister:
		return decodeBody[RegisterCmd](env)
	case TagDeregister:
		return decodeBody[DeregisterCmd](env)
	case TagRemove:
		return decodeBody[RemoveCmd](env)
	case TagNodeMeta:
		return decodeBody[NodeMetaCmd](env)
	case TagNodeForget:
		return decodeBody[NodeForgetCmd](env)
	case TagLeaseState:
		return decodeBody[LeaseStateCmd](env)
	case TagBatch:
		return decodeBody[BatchCmd](env)
	case TagClusterID:
		return decodeBody[ClusterIDCmd](env)
	case TagCheckStatus:
		return decodeBody[CheckStatusCmd](env)
	case TagRestore:
		return decodeBody[RestoreCmd](env)
	default:
		return nil, fmt.Errorf("%w: unknown type %q", ErrBadCommand, env.Type)
	}
}

func decodeBody[T Command](env envelope) (Command, error) {
	var c T
	if err := json.Unmarshal(env.Body, &c); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadCommand, env.Type, err)
	}
	return c, nil
}
