package binder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/lieur/lieur/fsm"
)

// Peer is how a node reaches other nodes' HTTP APIs: to forward a write to
// the leader, to ask a cluster to let it in, and to read another node's
// state. transport/httpapi implements it.
type Peer interface {
	// Apply asks the leader at httpAddr to apply an encoded fsm command and
	// returns the index that committed it. Errors wrap ErrNotLeader or
	// ErrNoLeader when the command was certainly not applied,
	// ErrOutcomeUnknown when it may have been, and ErrUnknownID or
	// ErrSuperseded for the FSM's refusals.
	Apply(ctx context.Context, httpAddr string, command []byte) (uint64, error)
	// ApplyBatch forwards several commands in one request; each gets its
	// own result (errors as for Apply). An error of the call itself
	// applies to every command.
	ApplyBatch(ctx context.Context, httpAddr string, commands [][]byte) ([]Outcome, error)
	// Join asks the cluster reachable at target (a URL or host:port) to add
	// m as a voter.
	Join(ctx context.Context, target string, m Member) error
	// RemoveMember asks the leader at httpAddr to remove a server.
	RemoveMember(ctx context.Context, httpAddr string, id string) error
	// Heartbeat asks the leader at httpAddr to renew a lease, limited to
	// instances of the scope's types (nil: any).
	Heartbeat(ctx context.Context, httpAddr, id string, scope []string) error
	// CheckUpdate forwards a ttl check's report to the leader at httpAddr
	// (see Node.CheckUpdate) and returns the index of the status change
	// it committed, 0 when the status did not change.
	CheckUpdate(ctx context.Context, httpAddr, checkID, status, output string, scope []string) (uint64, error)
	// ReadIndex asks the leader at httpAddr for a read index (see
	// Node.ReadIndex).
	ReadIndex(ctx context.Context, httpAddr string) (uint64, error)
	// Status reads another node's own view.
	Status(ctx context.Context, httpAddr string) (Status, error)
}

// ClusterMember is implemented by a Peer that proves to other nodes that
// it belongs to the cluster (transport/httpapi's PeerClient sends the
// cluster id in a header when no token file sets a credential). New hands
// it the node's ClusterID, which only the node knows.
type ClusterMember interface {
	SetClusterID(func() string)
}

// Outcome is one command's result in a batch.
type Outcome struct {
	Index uint64
	Err   error
}

// PeerAddr is an initial voter: its id and Raft address.
type PeerAddr struct {
	ID       string
	RaftAddr string
}

// Config is everything a node needs. Validate fills in defaults.
type Config struct {
	// ID names the node in the cluster; it must stay the same across
	// restarts with the same data dir.
	ID string
	// HTTPAddr is the host:port where this node serves its API, announced to
	// the cluster through the log so that followers can forward to it.
	HTTPAddr string
	// DataDir holds the Raft log, stable store and snapshots.
	DataDir string
	// Peers are the initial voters, this node included. A node with no Raft
	// state bootstraps them; one with state ignores them.
	Peers []PeerAddr
	// Join, instead of Peers: the URL of a node of an existing cluster. A
	// node with no Raft state asks it to be added; one with state resumes.
	Join string
	// JoinTimeout bounds how long such a node keeps asking (default 30 s):
	// past it, Run fails instead of retrying a dead address forever.
	JoinTimeout time.Duration
	// Recovery, when set, rewrites the Raft configuration of a node with
	// state to its servers before raft starts: the way back for the
	// survivors of a cluster that lost its quorum for good (recover.go).
	// Peers and Join are then not needed.
	Recovery *Recovery

	// Stream carries Raft traffic (transport/raftnet). Its Addr is this
	// node's Raft address.
	Stream raft.StreamLayer
	// Peer reaches other nodes' HTTP APIs.
	Peer Peer
	// Logger receives the node's logs; raft's go under "raft".
	Logger hclog.Logger

	// Raft timing. Defaults are tuned for a LAN: 350 ms heartbeat and
	// election timeouts, 175 ms leader lease, 10 ms commit timeout. A
	// leader's death is noticed only once both surviving followers' timers
	// fire (each rejects votes while it still knows a leader), so failover
	// takes about twice the heartbeat timeout: ~0.8 s here against ~1.0 s
	// with 500 ms (docs/reliability.md).
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// SnapshotThreshold is the number of log entries after which a snapshot
	// is taken (default 8192); SnapshotInterval how often that is checked
	// (default 30 s); TrailingLogs how many entries stay after compaction
	// (default 10240).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64

	// WriteHold is how long a write waits for a leader before failing with
	// ErrNoLeader (default 5 s).
	WriteHold time.Duration
	// ProbeTimeout bounds one TCP connection attempt of a verification
	// (default 1 s); a verification makes ProbeAttempts of them (default 2).
	ProbeTimeout  time.Duration
	ProbeAttempts int
	// MaxStaleness is how long a follower keeps serving default reads
	// without hearing from a leader (default 2 s); after that only stale
	// reads are served.
	MaxStaleness time.Duration
	// ExpireWithoutProbe removes an instance whose lease passed without
	// probing it first (by default one that still answers is kept,
	// flagged stale-lease).
	ExpireWithoutProbe bool
	// Nonvoter, with Join: join as a non-voter, a read replica that
	// applies the log and serves reads from its memory but never votes,
	// never counts toward a quorum and cannot lead (see operator.go). A
	// node with Raft state keeps the role the configuration gives it
	// (promote and demote change it).
	Nonvoter bool
	// CleanupDeadAfter, when positive, makes the leader remove a server it
	// has not heard from over Raft for this long, as long as the voters
	// left keep a quorum it hears from and number at least three (see
	// cleanup.go); 0, the default, turns it off.
	CleanupDeadAfter time.Duration
}

// Validate checks c and applies defaults.
func (c *Config) Validate() error {
	switch {
	case c.ID == "":
		return errors.New("config: node id is required")
	case fsm.ValidateID(c.ID) != nil:
		return fmt.Errorf("config: node %w", fsm.ValidateID(c.ID))
	case c.DataDir == "":
		return errors.New("config: data dir is required")
	case c.Stream == nil:
		return errors.New("config: raft stream layer is required")
	case c.Peer == nil:
		return errors.New("config: peer client is required")
	case c.HTTPAddr == "":
		return errors.New("config: http address is required")
	case len(c.Peers) == 0 && c.Join == "" && c.Recovery == nil:
		return errors.New("config: either peers or join is required")
	case len(c.Peers) > 0 && c.Join != "":
		return errors.New("config: peers and join are exclusive")
	case c.Nonvoter && c.Join == "":
		return errors.New("config: nonvoter needs join (bootstrapped peers are voters)")
	case c.CleanupDeadAfter != 0 && c.CleanupDeadAfter < MinCleanupDeadAfter:
		return fmt.Errorf("config: cleanup-dead-after %s is below %s (0 turns it off)", c.CleanupDeadAfter, MinCleanupDeadAfter)
	}
	if len(c.Peers) > 0 {
		self := false
		seen := map[string]bool{}
		// Raft refuses to bootstrap two servers at one address; it is
		// caught here so the error names the peers involved.
		byAddr := map[string]string{}
		for _, p := range c.Peers {
			if p.ID == "" || p.RaftAddr == "" {
				return fmt.Errorf("config: peer %q: id and raft address are required", p.ID)
			}
			if seen[p.ID] {
				return fmt.Errorf("config: peer %q listed twice", p.ID)
			}
			seen[p.ID] = true
			if other, ok := byAddr[p.RaftAddr]; ok {
				return fmt.Errorf("config: peers %q and %q share raft address %s", other, p.ID, p.RaftAddr)
			}
			byAddr[p.RaftAddr] = p.ID
			if p.ID == c.ID {
				self = true
			}
		}
		if !self {
			return fmt.Errorf("config: peers must include this node (%s)", c.ID)
		}
	}
	if c.Logger == nil {
		c.Logger = hclog.New(&hclog.LoggerOptions{Output: io.Discard})
	}
	setDefault(&c.HeartbeatTimeout, 350*time.Millisecond)
	setDefault(&c.ElectionTimeout, 350*time.Millisecond)
	setDefault(&c.LeaderLeaseTimeout, 175*time.Millisecond)
	setDefault(&c.CommitTimeout, 10*time.Millisecond)
	setDefault(&c.SnapshotInterval, 30*time.Second)
	setDefault(&c.WriteHold, 5*time.Second)
	setDefault(&c.ProbeTimeout, time.Second)
	setDefault(&c.MaxStaleness, 2*time.Second)
	setDefault(&c.JoinTimeout, 30*time.Second)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	if c.ProbeAttempts <= 0 {
		c.ProbeAttempts = 2
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		return fmt.Errorf("config: leader lease timeout %s exceeds heartbeat timeout %s", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if c.ElectionTimeout < c.HeartbeatTimeout {
		return fmt.Errorf("config: election timeout %s is below heartbeat timeout %s", c.ElectionTimeout, c.HeartbeatTimeout)
	}
	return nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}
