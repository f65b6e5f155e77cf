package binder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/lieur/lieur/fsm"
)

// Backup and restore of the table by an operator (`lieur snapshot save`,
// `lieur snapshot restore`): the file format is backupfile.go's, the
// restore's way through the log fsm/restore.go's.
//
// Both run on the leader; a follower forwards them (BackupPeer). A backup
// is a Raft snapshot the leader takes once it has confirmed it still leads
// (ReadIndex), so it holds every write acknowledged before the request,
// and its header names the exact index and term it reflects. A restore is
// one restore/v1 entry the leader writes alone: every node applies it at
// the same index, and every lease starts afresh from the moment the leader
// applies it.

// restoreFormat is the log format every member must apply before the
// leader writes a restore/v1 entry: a build that does not know it would
// refuse it and keep its table.
const restoreFormat = 4

// BackupPeer is implemented by a Peer that can ask the leader for a backup
// and hand it a restore (transport/httpapi's PeerClient does). Without it
// a follower answers that the request must go to the leader.
type BackupPeer interface {
	// Backup asks the leader at httpAddr for a backup file, taken there.
	Backup(ctx context.Context, httpAddr string) ([]byte, error)
	// Restore hands the leader at httpAddr a backup file to restore
	// there.
	Restore(ctx context.Context, httpAddr string, file []byte) (RestoreResult, error)
}

// RestoreResult is what a restore committed.
type RestoreResult struct {
	// Index is the index of the restore/v1 entry: every instance of the
	// restored table is registered at it, and a node whose applied index
	// reaches it holds the restored table.
	Index uint64
	// Services and Types count the restored table.
	Services int
	Types    int
	// From is the restored file's header.
	From SnapshotHeader
}

// Backup returns a backup file of the table (see backupfile.go), taken on
// the leader: directly when this node leads, forwarded otherwise, retried
// while there is no leader up to the write hold timeout.
func (n *Node) Backup(ctx context.Context) ([]byte, error) {
	var file []byte
	err := n.onLeader(ctx, "backup",
		func() error {
			var err error
			file, err = n.BackupLocal(ctx)
			return err
		},
		func(addr string) error {
			bp, ok := n.cfg.Peer.(BackupPeer)
			if !ok {
				return fmt.Errorf("%w: this binder cannot forward a backup; ask the leader", ErrInvalid)
			}
			var err error
			file, err = bp.Backup(ctx, addr)
			return err
		})
	return file, err
}

// BackupLocal takes a backup on this node, which must be the leader
// (ErrNotLeader otherwise); it never forwards.
func (n *Node) BackupLocal(ctx context.Context) ([]byte, error) {
	if _, err := n.ReadIndex(ctx); err != nil {
		return nil, err
	}
	// A snapshot raft takes, not a copy of the table: raft's FSM
	// goroutine takes it between two entries and knows the index and
	// term of the last one, which the table alone does not (it sees
	// only commands, not the entries of elections and barriers).
	fut := n.raft.Snapshot()
	if err := fut.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrRaftShutdown):
			return nil, ErrShutdown
		case errors.Is(err, raft.ErrNothingNewToSnapshot),
			// Raft refuses while a configuration change is being
			// applied (it exports no error for it): worth a retry,
			// like a leader change.
			strings.Contains(err.Error(), "cannot take snapshot now"):
			return nil, fmt.Errorf("%w: take a snapshot: %v", ErrNoLeader, err)
		}
		return nil, fmt.Errorf("take a snapshot: %w", err)
	}
	meta, rc, err := fut.Open()
	if err != nil {
		return nil, fmt.Errorf("open the snapshot: %w", err)
	}
	defer rc.Close()
	table, err := fsm.LoadBackup(rc)
	if err != nil {
		return nil, fmt.Errorf("read the snapshot: %w", err)
	}
	payload, _ := table.BackupTable()
	var buf bytes.Buffer
	buf.Grow(len(payload) + 512)
	h := SnapshotHeader{Index: meta.Index, Term: meta.Term, TakenAt: time.Now().UTC().Truncate(time.Millisecond), Node: n.cfg.ID}
	if err := WriteSnapshotFile(&buf, h, payload); err != nil {
		return nil, err
	}
	n.log.Info("backup taken", "index", meta.Index, "term", meta.Term, "services", table.Len(), "bytes", buf.Len())
	return buf.Bytes(), nil
}

// Restore replaces the table of the whole cluster by a backup file's,
// through the leader: directly when this node leads, forwarded otherwise.
// The file is verified here first (header, size, checksum, every instance),
// so a damaged one is refused, with an error wrapping ErrBadSnapshot,
// before anything is sent anywhere; on any refusal nothing changes. A
// restore whose forwarding fails after it may have reached the leader is
// ErrOutcomeUnknown and not retried (restoring the same file again is
// harmless: read the table first).
func (n *Node) Restore(ctx context.Context, file []byte) (RestoreResult, error) {
	if _, _, err := loadSnapshotFile(bytes.NewReader(file)); err != nil {
		return RestoreResult{}, err
	}
	var res RestoreResult
	err := n.onLeader(ctx, "restore",
		func() error {
			var err error
			res, err = n.RestoreLocal(ctx, file)
			return err
		},
		func(addr string) error {
			bp, ok := n.cfg.Peer.(BackupPeer)
			if !ok {
				return fmt.Errorf("%w: this binder cannot forward a restore; send it to the leader", ErrInvalid)
			}
			var err error
			res, err = bp.Restore(ctx, addr, file)
			return err
		})
	return res, err
}

// RestoreLocal restores a backup file on this node, which must be the
// leader (ErrNotLeader otherwise); it never forwards. The restore/v1
// entry is written alone, not through the batcher: the table refuses it
// inside a batch.
func (n *Node) RestoreLocal(ctx context.Context, file []byte) (RestoreResult, error) {
	table, h, err := loadSnapshotFile(bytes.NewReader(file))
	if err != nil {
		return RestoreResult{}, err
	}
	if f := n.clusterFormat(); f < restoreFormat {
		return RestoreResult{}, fmt.Errorf("%w: a restore needs log format %d, the cluster is at %d (a member runs an older build)", ErrUpgrading, restoreFormat, f)
	}
	cmd, err := table.RestoreCommand()
	if err != nil {
		return RestoreResult{}, fmt.Errorf("%w: %v", ErrSnapshotTooLarge, err)
	}
	data, err := fsm.Encode(cmd)
	if err != nil {
		return RestoreResult{}, err
	}
	if n.raft.State() != raft.Leader {
		return RestoreResult{}, ErrNotLeader
	}
	if err := ctx.Err(); err != nil {
		return RestoreResult{}, err
	}
	idx, err := n.raftApply(data)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	res := RestoreResult{Index: idx, Services: table.Len(), Types: len(table.CountByType()), From: h}
	n.log.Warn("table restored from a backup", "index", idx, "services", res.Services, "types", res.Types,
		"backup_index", h.Index, "backup_term", h.Term, "backup_node", h.Node, "backup_taken_at", h.TakenAt)
	return res, nil
}
