package binder

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/lieur/lieur/fsm"
)

// Status is one node's own view of itself and the cluster.
type Status struct {
	ID           string
	State        string
	Leader       string
	Term         uint64
	AppliedIndex uint64
	LastLogIndex uint64
	Services     int
	TableHash    string
	CaughtUp     bool
	LastContact  time.Duration // -1: never heard from a leader
	// LeaseGuard: per type, the leases the mass-expiry guard holds back
	// (on the leader).
	LeaseGuard map[string]int
	// VerificationHold: this node's probes fail for most instances, so it
	// holds report removals (it may be the one cut off).
	VerificationHold bool
	// LogFormat is the cluster's log format as this node sees it;
	// ClusterIDKnown whether it has applied the cluster id.
	LogFormat      int
	ClusterIDKnown bool
	// Unheard, on the leader: the servers it does not hear from over
	// Raft, and for how long (cleanup.go).
	Unheard map[string]time.Duration
}

// Member is one server of the Raft configuration.
type Member struct {
	ID       string
	RaftAddr string
	HTTPAddr string
	Voter    bool
	// State is "leader", "follower", "candidate" or "unknown" (not
	// reachable).
	State string
	// Unheard: how long the leader has not heard from this server over
	// Raft (cleanup.go); 0 while it does.
	Unheard time.Duration
}

// Node is one binder. Create it with New, run its background work with
// Run, stop it with Close. All methods are safe for concurrent use.
type Node struct {
	cfg    Config
	log    hclog.Logger
	fsm    *fsm.FSM
	raft   *raft.Raft
	trans  *raft.NetworkTransport
	store  *raftboltdb.BoltStore
	resume bool // the data dir held Raft state at start

	metrics  *metrics
	applyCh  chan *applyReq // writes for the batcher, on the leader
	inFlight chan struct{}  // slots for the batcher's entries in raft
	// forwardCh and forwardInFlight: the same for a follower's forwarding.
	forwardCh       chan *applyReq
	forwardInFlight chan struct{}
	changes         *notifier
	events          *EventLog // this binder's recent history of the table, for GET /v1/events
	cursors         sync.Map  // type -> *atomic.Uint64
	lead            leadership
	confirm         confirmRounds // coalesced barriers of consistent reads
	leases          *leases
	checks          *checker
	probeSlots      chan struct{} // bounds the leader's concurrent check probes
	dead            *deadServers  // the leader's unheard followers (cleanup.go)
	// holdUntil (unix nanos): until then /v1/status reports that report
	// removals were held because this binder seemed cut off.
	holdUntil atomic.Int64
	// guardLogged remembers what the mass-expiry guard last logged.
	guardMu     sync.Mutex
	guardLogged map[string]int
	// leaderSeen wakes writes and reads waiting for a leader as soon as
	// raft observes one, instead of at their next backoff tick.
	leaderSeen *notifier
	observer   *raft.Observer
	// leaderContact (unix nanos) is when this node last knew a leader to
	// be alive, besides raft's own LastContact: when it observed one
	// elected, or when it stopped leading itself.
	leaderContact atomic.Int64
	caughtUp      atomic.Bool
	restoreLog    restoreLog    // lines for a restored snapshot's services
	readFloor     atomic.Uint64 // highest index of a write this node forwarded

	verifyMu  sync.Mutex
	verifying map[string]*verification
	removedMu sync.Mutex
	removed   map[string]time.Time // recently removed ids, for coherent late reports

	ctx       context.Context // ends when Close starts
	cancel    context.CancelFunc
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup
}

// New opens the node's stores and starts its Raft member. A node whose data
// dir holds no Raft state bootstraps cfg.Peers (or, with cfg.Join, waits for
// Run to ask the cluster to add it).
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		cfg:         cfg,
		log:         cfg.Logger,
		changes:     newNotifier(),
		events:      NewEventLog(EventRingSize),
		verifying:   map[string]*verification{},
		removed:     map[string]time.Time{},
		leaderSeen:  newNotifier(),
		leases:      newLeases(),
		checks:      newChecker(),
		probeSlots:  make(chan struct{}, maxConcurrentProbes),
		guardLogged: map[string]int{},
		dead:        newDeadServers(cfg.HeartbeatTimeout, cfg.LeaderLeaseTimeout),
		ctx:         ctx,
		cancel:      cancel,
	}
	n.fsm = fsm.New(n.observe)
	if cm, ok := cfg.Peer.(ClusterMember); ok {
		cm.SetClusterID(n.fsm.ClusterID)
	}
	n.metrics = newMetrics()
	n.applyCh = make(chan *applyReq, maxBatch)
	n.inFlight = make(chan struct{}, maxInFlight)
	n.forwardCh = make(chan *applyReq, maxBatch)
	n.forwardInFlight = make(chan struct{}, maxInFlight)

	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.DataDir, "raft.db")})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open raft store: %w", err)
	}
	n.store = store
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, cfg.Logger.Named("snapshot"))
	if err != nil {
		store.Close()
		cancel()
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	logs, err := raft.NewLogCache(512, store)
	if err != nil {
		store.Close()
		cancel()
		return nil, fmt.Errorf("log cache: %w", err)
	}
	n.resume, err = raft.HasExistingState(logs, store, snaps)
	if err != nil {
		store.Close()
		cancel()
		return nil, fmt.Errorf("inspect raft state: %w", err)
	}

	// Tapped for the leader's lease-check reports (cleanup.go).
	rc := raftConfig(cfg, raftLogTap{Logger: cfg.Logger.Named("raft"), n: n})

	n.trans = raftTransport(cfg)
	if cfg.Recovery != nil {
		if err := n.recoverCluster(rc, logs, snaps); err != nil {
			n.trans.Close()
			store.Close()
			cancel()
			return nil, err
		}
	}
	r, err := raft.NewRaft(rc, &timedFSM{FSM: n.fsm, applySeconds: n.metrics.applySeconds}, logs, store, snaps, n.trans)
	if err != nil {
		n.trans.Close()
		store.Close()
		cancel()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	n.raft = r

	if !n.resume && len(cfg.Peers) > 0 {
		var servers []raft.Server
		for _, p := range cfg.Peers {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
		}
		err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
		if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			n.Close()
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
		n.log.Info("bootstrapped cluster", "voters", len(servers))
	} else if n.resume {
		n.log.Info("resuming from existing raft state", "last_index", r.LastIndex())
	}
	n.wg.Add(5)
	go n.runChecks()
	go n.watchLeadership()
	go n.runLeases()
	go n.runBatcher()
	go n.runForwarder()
	n.wg.Add(1)
	go n.runDeadServers()
	obs := make(chan raft.Observation, 16)
	n.observer = raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(n.observer)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			select {
			case o := <-obs:
				if lo, ok := o.Data.(raft.LeaderObservation); ok && lo.LeaderID != "" {
					n.noteLeaderContact()
				}
				n.leaderSeen.notify("")
			case <-n.ctx.Done():
				return
			}
		}
	}()
	return n, nil
}

// Run does the node's background work until ctx ends or the node closes:
// it asks the cluster to add this node when it started with Join and no
// state, then makes sure the cluster knows this node's HTTP address.
func (n *Node) Run(ctx context.Context) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-n.ctx.Done():
			stop()
		case <-ctx.Done():
		}
	}()
	if n.cfg.Join != "" && !n.resume {
		if err := n.joinCluster(ctx); err != nil {
			return err
		}
	}
	go n.catchUp(ctx)
	n.announce(ctx)
	<-ctx.Done()
	return nil
}

// joinCluster asks the node at cfg.Join to add this one, retrying until it
// succeeds or cfg.JoinTimeout passes: a wrong or dead --join address must
// end the agent with an error rather than leave it retrying unnoticed.
func (n *Node) joinCluster(ctx context.Context) error {
	m := Member{ID: n.cfg.ID, RaftAddr: string(n.trans.LocalAddr()), HTTPAddr: n.cfg.HTTPAddr, Voter: !n.cfg.Nonvoter}
	jctx, cancel := context.WithTimeout(ctx, n.cfg.JoinTimeout)
	defer cancel()
	var last error
	for attempt := 1; ; attempt++ {
		err := n.cfg.Peer.Join(jctx, n.cfg.Join, m)
		if err == nil {
			n.log.Info("joined cluster", "via", n.cfg.Join)
			return nil
		}
		// An attempt cut short by the deadline says less than the
		// failure before it, which is the one worth reporting.
		if last == nil || jctx.Err() == nil {
			last = err
		}
		if ctx.Err() == nil && jctx.Err() == nil {
			n.log.Warn("join failed, retrying", "via", n.cfg.Join, "attempt", attempt, "error", err)
			if sleepCtx(jctx, backoff(attempt)) {
				continue
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("join %s: %w", n.cfg.Join, ctx.Err())
		}
		return fmt.Errorf("join %s: no successful answer within %s: %w", n.cfg.Join, n.cfg.JoinTimeout, last)
	}
}

// announce commits this node's HTTP address to the log unless the table
// already holds it, retrying until it does.
func (n *Node) announce(ctx context.Context) {
	for attempt := 1; ; attempt++ {
		if addr, ok := n.fsm.NodeHTTPAddr(n.cfg.ID); ok && addr == n.cfg.HTTPAddr && n.fsm.NodeFormat(n.cfg.ID) == fsm.LogFormat {
			return
		}
		_, err := n.apply(ctx, fsm.NodeMetaCmd{NodeID: n.cfg.ID, HTTPAddr: n.cfg.HTTPAddr, Format: fsm.LogFormat}, true)
		if err == nil {
			n.log.Info("announced http address", "http_addr", n.cfg.HTTPAddr)
			return
		}
		n.log.Debug("announce failed, retrying", "error", err)
		if !sleepCtx(ctx, backoff(attempt)) {
			return
		}
	}
}

// Close stops the node. A leader first hands leadership to another voter
// when there is one, so the cluster does not wait for an election timeout.
func (n *Node) Close() error {
	// New calls Close when it fails half way (a bootstrap refused after
	// raft started, before the observer was registered), so every step
	// checks that what it stops was started.
	n.closeOnce.Do(func() {
		if n.cancel != nil {
			n.cancel()
		}
		if n.raft != nil {
			if n.raft.State() == raft.Leader && n.voters() > 1 {
				if err := n.raft.LeadershipTransfer().Error(); err != nil {
					n.log.Warn("leadership transfer before stop failed", "error", err)
				} else {
					n.log.Info("handed leadership over before stopping")
				}
			}
			// The transport goes first: it ends dials that would keep
			// raft's goroutines, which Shutdown waits for, patiently
			// retrying peers that are down.
			if n.trans != nil {
				n.trans.CloseStreams()
				n.trans.Close()
			}
			if n.observer != nil {
				n.raft.DeregisterObserver(n.observer)
			}
			if err := n.raft.Shutdown().Error(); err != nil {
				n.closeErr = fmt.Errorf("raft shutdown: %w", err)
			}
		}
		n.wg.Wait()
		if n.trans != nil {
			n.trans.CloseStreams()
			n.trans.Close()
		}
		if n.store != nil {
			if err := n.store.Close(); err != nil && n.closeErr == nil {
				n.closeErr = fmt.Errorf("close raft store: %w", err)
			}
		}
	})
	return n.closeErr
}

func (n *Node) voters() int {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	c := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			c++
		}
	}
	return c
}

// ClusterID returns the id the cluster's first leader drew and committed,
// "" until this node has applied it. Binders prove to each other that they
// belong to the cluster with it (see ClusterMember).
func (n *Node) ClusterID() string { return n.fsm.ClusterID() }

// raftConfig is the Raft configuration of a node with cfg.
func raftConfig(cfg Config, logger hclog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = logger
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	// Concurrent writes still share an append and an fsync: the leader's
	// loop takes every Apply waiting to be received in one batch. The
	// apply channel stays unbuffered (no BatchApplyCh): with a buffer,
	// raft v1.8.0 can accept an Apply as it shuts down and never answer
	// it, and the write (and the node's Close, which waits for it) would
	// wait forever.
	rc.MaxAppendEntries = 64
	// A leader whose own removal commits steps down and stays a
	// non-member follower, as a removed follower does, instead of shutting
	// raft down by itself: nobody waits for a shutdown raft starts on its
	// own, so Close's later Shutdown would return at once and close the
	// log store under raft's goroutines still running ("database not
	// open"). Outside the configuration it never campaigns.
	rc.ShutdownOnRemove = false
	return rc
}

// ID returns the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// IsLeader reports whether this node currently believes it leads.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Status returns this node's own view.
func (n *Node) Status() Status {
	_, leader := n.raft.LeaderWithID()
	term, _ := strconv.ParseUint(n.raft.Stats()["term"], 10, 64)
	return Status{
		ID:               n.cfg.ID,
		State:            stateName(n.raft.State()),
		Leader:           string(leader),
		Term:             term,
		AppliedIndex:     n.raft.AppliedIndex(),
		LastLogIndex:     n.raft.LastIndex(),
		Services:         n.fsm.Len(),
		TableHash:        n.fsm.TableHash(),
		CaughtUp:         n.caughtUp.Load(),
		LastContact:      n.LastContact(),
		LeaseGuard:       n.leases.guarded(),
		VerificationHold: time.Now().UnixNano() < n.holdUntil.Load(),
		LogFormat:        n.clusterFormat(),
		ClusterIDKnown:   n.fsm.ClusterID() != "",
		Unheard:          n.localUnheard(),
	}
}

func stateName(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	default:
		return "unknown"
	}
}

const recentRemovalWindow = time.Minute

func (n *Node) cursor(typ string) *atomic.Uint64 {
	if c, ok := n.cursors.Load(typ); ok {
		return c.(*atomic.Uint64)
	}
	c, _ := n.cursors.LoadOrStore(typ, new(atomic.Uint64))
	if !n.fsm.HasType(typ) {
		// The type left the table between the caller's read and here, and
		// observe already pruned its cursor: do not keep the new one.
		n.cursors.Delete(typ)
	}
	return c.(*atomic.Uint64)
}

// backoff grows from 25 ms to 500 ms with jitter, so that nodes retrying at
// once spread out.
func backoff(attempt int) time.Duration {
	d := 25 * time.Millisecond << min(attempt-1, 5)
	d = min(d, 500*time.Millisecond)
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
