package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/wire"
)

// Backup and restore of the table: GET /v1/snapshot answers a backup file
// (binder/backupfile.go), PUT /v1/snapshot restores one. Both need the
// admin role, and both run on the leader: a follower forwards them, so an
// operator may call any binder.
//
// The body of a restore is the file itself, as `lieur snapshot save` wrote
// it (curl --data-binary @FILE), with Content-Type
// application/octet-stream: the one body of the API that is not JSON.

// SnapshotBinder is what the backup endpoints need of a node.
// *binder.Node implements it; a Binder without it serves no /v1/snapshot.
type SnapshotBinder interface {
	Backup(ctx context.Context) ([]byte, error)
	BackupLocal(ctx context.Context) ([]byte, error)
	Restore(ctx context.Context, file []byte) (binder.RestoreResult, error)
	RestoreLocal(ctx context.Context, file []byte) (binder.RestoreResult, error)
}

var _ SnapshotBinder = (*binder.Node)(nil)

// snapshotRoutes mounts the backup endpoints when the binder has them.
func (s *Server) snapshotRoutes() {
	sb, ok := s.b.(SnapshotBinder)
	if !ok {
		return
	}
	s.handle("GET /v1/snapshot", RoleAdmin, func(w http.ResponseWriter, r *http.Request) { s.saveSnapshot(w, r, sb) })
	s.handle("PUT /v1/snapshot", RoleAdmin, func(w http.ResponseWriter, r *http.Request) { s.restoreSnapshot(w, r, sb) })
}

// isSnapshotUpload reports whether r is a restore carrying a backup file,
// the one request whose body need not be JSON.
func isSnapshotUpload(r *http.Request) bool {
	return r.Method == http.MethodPut && r.URL.Path == "/v1/snapshot" && isSnapshotType(r)
}

func isSnapshotType(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == wire.ContentTypeSnapshot
}

func (s *Server) saveSnapshot(w http.ResponseWriter, r *http.Request, sb SnapshotBinder) {
	var file []byte
	var err error
	if r.Header.Get(wire.HeaderLeaderOnly) != "" {
		file, err = sb.BackupLocal(r.Context())
	} else {
		file, err = sb.Backup(r.Context())
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	h, err := binder.ReadSnapshotHeader(bytes.NewReader(file))
	if err != nil {
		// The node wrote it: a file it cannot read back is a bug.
		s.fail(w, r, fmt.Errorf("the backup taken is unreadable: %w", err))
		return
	}
	w.Header().Set("Content-Type", wire.ContentTypeSnapshot)
	w.Header().Set("Content-Length", strconv.Itoa(len(file)))
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="lieur-%d.snap"`, h.Index))
	w.Header().Set(wire.HeaderIndex, strconv.FormatUint(h.Index, 10))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(file)
	}
}

func (s *Server) restoreSnapshot(w http.ResponseWriter, r *http.Request, sb SnapshotBinder) {
	if !isSnapshotType(r) {
		ct := r.Header.Get("Content-Type")
		if ct == "" {
			ct = "none"
		}
		w.Header().Set("Accept", wire.ContentTypeSnapshot)
		writeError(w, http.StatusUnsupportedMediaType, "", fmt.Sprintf("the body of PUT /v1/snapshot is a backup file: Content-Type: %s (got %s)", wire.ContentTypeSnapshot, truncate(ct)))
		return
	}
	file, err := io.ReadAll(http.MaxBytesReader(w, r.Body, binder.MaxSnapshotFileBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusBadRequest, "", fmt.Sprintf("request body exceeds %d bytes: no backup this binder can restore is that large", binder.MaxSnapshotFileBytes))
			return
		}
		// The upload ended early: what arrived is a truncated file.
		writeError(w, http.StatusBadRequest, "", fmt.Sprintf("%v: the upload ended early: %v", binder.ErrSnapshotTruncated, err))
		return
	}
	if len(file) == 0 {
		writeError(w, http.StatusBadRequest, "", "request body is empty; a backup file is required (lieur snapshot save writes one)")
		return
	}
	var res binder.RestoreResult
	if r.Header.Get(wire.HeaderLeaderOnly) != "" {
		res, err = sb.RestoreLocal(r.Context(), file)
	} else {
		res, err = sb.Restore(r.Context(), file)
	}
	if errors.Is(err, binder.ErrBadSnapshot) {
		writeError(w, http.StatusBadRequest, "", err.Error())
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.SnapshotRestoreResponse{Index: res.Index, Services: res.Services, Types: res.Types,
		BackupIndex: res.From.Index, BackupTerm: res.From.Term})
}

var _ binder.BackupPeer = (*PeerClient)(nil)

// Backup asks the leader at httpAddr for a backup file, taken there.
func (p *PeerClient) Backup(ctx context.Context, httpAddr string) ([]byte, error) {
	return p.snapshotCall(ctx, http.MethodGet, httpAddr, nil)
}

// Restore hands the leader at httpAddr a backup file to restore there.
func (p *PeerClient) Restore(ctx context.Context, httpAddr string, file []byte) (binder.RestoreResult, error) {
	data, err := p.snapshotCall(ctx, http.MethodPut, httpAddr, file)
	if err != nil {
		return binder.RestoreResult{}, err
	}
	var resp wire.SnapshotRestoreResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return binder.RestoreResult{}, fmt.Errorf("%w: decode the leader's answer: %v", binder.ErrOutcomeUnknown, err)
	}
	return binder.RestoreResult{Index: resp.Index, Services: resp.Services, Types: resp.Types,
		From: binder.SnapshotHeader{Index: resp.BackupIndex, Term: resp.BackupTerm}}, nil
}

// snapshotCall sends a backup or restore to the leader, marked not to be
// forwarded again, and returns the body of a 2xx answer. Errors map onto
// binder's sentinels as do's.
func (p *PeerClient) snapshotCall(ctx context.Context, method, httpAddr string, body []byte) ([]byte, error) {
	url := p.base(httpAddr) + "/v1/snapshot"
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", binder.ErrInvalid, err)
	}
	req.Header.Set(wire.HeaderLeaderOnly, "true")
	if body != nil {
		req.Header.Set("Content-Type", wire.ContentTypeSnapshot)
	}
	p.identify(req)
	resp, err := p.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, fmt.Errorf("%w: %s unreachable: %v", binder.ErrNoLeader, url, err)
		}
		return nil, fmt.Errorf("%w: %s %s: %v", binder.ErrOutcomeUnknown, method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, binder.MaxSnapshotFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading answer of %s: %v", binder.ErrOutcomeUnknown, url, err)
	}
	if resp.StatusCode/100 == 2 {
		return data, nil
	}
	var e wire.Error
	_ = json.Unmarshal(data, &e)
	if e.Error == "" {
		e.Error = string(bytes.TrimSpace(data[:min(len(data), 200)]))
	}
	return nil, remoteError(url, resp.StatusCode, e)
}
