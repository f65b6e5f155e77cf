package binder

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/lieur/lieur/fsm"
)

// Disaster recovery: when a cluster has lost a quorum of its voters for
// good, the survivors can no longer elect a leader, and Raft offers no way
// back from inside. `lieur agent --recover-peers FILE`, given to each
// survivor while it is stopped, rewrites its Raft configuration to the
// servers FILE lists (raft.RecoverCluster): it replays everything the
// node's log holds into a new snapshot carrying that configuration, and
// the node then starts as a member of a new, smaller cluster that holds
// every write the survivors had. raft warns that this commits whatever
// the log holds, including entries that were still being replicated when
// the quorum was lost: a write whose client saw an error may be there.
//
// FILE, in either form:
//
//	n1=10.0.0.1:7001          # one server per line, as in --peers
//	n2=10.0.0.2:7001
//
//	[{"id":"n1","address":"10.0.0.1:7001"},{"id":"n2","address":"10.0.0.2:7001","non_voter":false}]
//
// The JSON form is raft's peers.json (Consul's and Nomad's outage
// recovery file), so an operator who knows those can reuse theirs.
//
// Every survivor must be given the same list. A node applies a given file
// once: it records the file's digest in its data dir (recoveryMarker), and
// when it is started again with the same file (a unit file that still has
// the flag, a supervisor restarting it) it starts normally instead of
// rewriting its configuration again, which could drop members that joined
// since.

// maxRecoveryFile bounds the peers file: a list of servers, not data.
const maxRecoveryFile = 1 << 20

// recoveryMarker, in the data dir, records the last peers file applied.
const recoveryMarker = "recovered-peers.json"

// ErrRecovery is wrapped by every refusal of a peers file or of a
// recovery.
var ErrRecovery = errors.New("recover peers")

// Recovery is a peers file, read and checked.
type Recovery struct {
	// Source names the file, for logs and errors.
	Source string
	// Servers is the configuration to recover into.
	Servers []RecoveryServer
	// Digest is the SHA-256 of the file's bytes, hex.
	Digest string
}

// RecoveryServer is one server of a recovered configuration.
type RecoveryServer struct {
	ID       string `json:"id"`
	RaftAddr string `json:"address"`
	Nonvoter bool   `json:"non_voter,omitempty"`
}

// ReadRecoveryFile reads and checks a peers file (see above).
func ReadRecoveryFile(path string) (*Recovery, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRecovery, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecoveryFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrRecovery, path, err)
	}
	if len(data) > maxRecoveryFile {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes: not a list of servers", ErrRecovery, path, maxRecoveryFile)
	}
	servers, err := ParseRecovery(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	sum := sha256.Sum256(data)
	return &Recovery{Source: path, Servers: servers, Digest: hex.EncodeToString(sum[:])}, nil
}

// ParseRecovery reads a peers file's bytes: a JSON array as raft's
// peers.json, or id=host:port lines (blank lines and # comments ignored).
// It refuses an empty list, a list without a voter, an id that breaks the
// id rule, an address that is not host:port, and an id or address listed
// twice.
func ParseRecovery(data []byte) ([]RecoveryServer, error) {
	var servers []RecoveryServer
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '[' {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&servers); err != nil {
			return nil, fmt.Errorf("%w: not a peers.json array of {\"id\",\"address\",\"non_voter\"}: %v", ErrRecovery, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("%w: data after the JSON array", ErrRecovery)
		}
	} else {
		for n, line := range strings.Split(string(data), "\n") {
			line, _, _ = strings.Cut(line, "#")
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			id, addr, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fmt.Errorf("%w: line %d: %q is not id=host:port", ErrRecovery, n+1, line)
			}
			servers = append(servers, RecoveryServer{ID: strings.TrimSpace(id), RaftAddr: strings.TrimSpace(addr)})
		}
	}
	if len(servers) == 0 {
		return nil, fmt.Errorf("%w: the file lists no server", ErrRecovery)
	}
	ids, addrs, voters := map[string]bool{}, map[string]string{}, 0
	for _, s := range servers {
		if err := fsm.ValidateID(s.ID); err != nil {
			return nil, fmt.Errorf("%w: server %q: %v", ErrRecovery, s.ID, err)
		}
		if host, port, err := net.SplitHostPort(s.RaftAddr); err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("%w: server %s: address %q is not host:port", ErrRecovery, s.ID, s.RaftAddr)
		}
		if ids[s.ID] {
			return nil, fmt.Errorf("%w: server %s listed twice", ErrRecovery, s.ID)
		}
		ids[s.ID] = true
		if other, ok := addrs[s.RaftAddr]; ok {
			return nil, fmt.Errorf("%w: servers %s and %s share the address %s", ErrRecovery, other, s.ID, s.RaftAddr)
		}
		addrs[s.RaftAddr] = s.ID
		if !s.Nonvoter {
			voters++
		}
	}
	if voters == 0 {
		return nil, fmt.Errorf("%w: the file lists no voter", ErrRecovery)
	}
	return servers, nil
}

// recoveryRecord is what recoveryMarker holds.
type recoveryRecord struct {
	Digest      string           `json:"digest"`
	Source      string           `json:"source"`
	RecoveredAt time.Time        `json:"recovered_at"`
	LastIndex   uint64           `json:"last_index"`
	Servers     []RecoveryServer `json:"servers"`
}

// recoverCluster rewrites the node's Raft configuration to cfg.Recovery's
// servers before raft starts (see above). logs, snaps and rc are those New
// is about to start raft with.
func (n *Node) recoverCluster(rc *raft.Config, logs raft.LogStore, snaps raft.SnapshotStore) error {
	rec := n.cfg.Recovery
	var self *RecoveryServer
	for i := range rec.Servers {
		if rec.Servers[i].ID == n.cfg.ID {
			self = &rec.Servers[i]
		}
	}
	local := string(n.trans.LocalAddr())
	switch {
	case self == nil:
		return fmt.Errorf("%w: %s does not list this node (%s)", ErrRecovery, rec.Source, n.cfg.ID)
	case self.RaftAddr != local:
		// Raft would start with a configuration in which this node is
		// unreachable at the address the others dial.
		return fmt.Errorf("%w: %s gives %s the address %s, but it listens for Raft at %s", ErrRecovery, rec.Source, n.cfg.ID, self.RaftAddr, local)
	}
	markerPath := filepath.Join(n.cfg.DataDir, recoveryMarker)
	if data, err := os.ReadFile(markerPath); err == nil {
		var done recoveryRecord
		if json.Unmarshal(data, &done) == nil && done.Digest == rec.Digest {
			n.log.Warn("this peers file was already applied; starting normally (remove --recover-peers)",
				"file", rec.Source, "recovered_at", done.RecoveredAt)
			return nil
		}
	}
	if !n.resume {
		return fmt.Errorf("%w: %s holds no Raft state to recover; a node without state joins with --join", ErrRecovery, n.cfg.DataDir)
	}
	conf := raft.Configuration{}
	for _, s := range rec.Servers {
		suffrage := raft.Voter
		if s.Nonvoter {
			suffrage = raft.Nonvoter
		}
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: suffrage, ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.RaftAddr)})
	}
	// A table of its own: RecoverCluster replays the log into it to write
	// the new snapshot, and raft restores the node's table from that
	// snapshot when it starts.
	if err := raft.RecoverCluster(rc, fsm.New(nil), logs, n.store, snaps, n.trans, conf); err != nil {
		return fmt.Errorf("%w: %v", ErrRecovery, err)
	}
	var last uint64
	if list, err := snaps.List(); err == nil && len(list) > 0 {
		last = list[0].Index
	}
	record, _ := json.MarshalIndent(recoveryRecord{Digest: rec.Digest, Source: rec.Source, RecoveredAt: time.Now().UTC(), LastIndex: last, Servers: rec.Servers}, "", "  ")
	if err := writeFileSynced(markerPath, record); err != nil {
		// The configuration is rewritten already: starting is right. A
		// restart with the flag still given would rewrite it again, to
		// the same list.
		n.log.Error("recovered, but could not record it", "file", markerPath, "error", err)
	}
	ids := make([]string, len(rec.Servers))
	for i, s := range rec.Servers {
		ids[i] = s.ID
	}
	n.log.Warn("recovered the cluster from a peers file: the configuration is now these servers only",
		"file", rec.Source, "servers", strings.Join(ids, ","), "last_index", last)
	return nil
}

// writeFileSynced writes data to path through a temporary file, synced
// and renamed, so a crash leaves the old file or the new one. The file is
// created 0600 (CreateTemp's mode).
func writeFileSynced(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
