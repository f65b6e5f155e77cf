package binder

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/lieur/lieur/fsm"
)

// The backup file format: what `lieur snapshot save` writes, what
// GET /v1/snapshot answers and PUT /v1/snapshot takes. One header line,
// then the payload:
//
//	lieur-snapshot {"format":1,"index":1234,"term":3,"size":5678,"sha256":"<64 hex>","taken_at":"...","node":"n1"}\n
//	<size bytes: the table as fsm's BackupTable writes it (JSON)>
//
// format is this file format's version (SnapshotFormat); index and term
// are those of the Raft snapshot the payload came from, taken on the
// leader (informational: a restore commits the table at a new index, see
// fsm/restore.go); size is the payload's length and sha256 its SHA-256,
// so that a truncated, corrupt or extended file is refused before
// anything reads the table from it. The header is JSON so that `head -1
// FILE` shows it; the payload can be checked with `tail -n +2 FILE |
// sha256sum`.
//
// The format lives here, beside the node that writes and restores it, and
// not in fsm (which must stay free of files and checksums); the CLI's
// `snapshot inspect` uses the same reader as the restore.

// SnapshotFormat is the version of the backup file format this build
// writes, and the newest it reads.
const SnapshotFormat = 1

// snapshotMagic starts every backup file.
const snapshotMagic = "lieur-snapshot "

// maxSnapshotHeader bounds the header line: anything longer is not one.
const maxSnapshotHeader = 4096

// Errors of a backup file that cannot be restored. Each wraps
// ErrBadSnapshot.
var (
	// ErrBadSnapshot: the file is not a backup this build can restore.
	ErrBadSnapshot = errors.New("snapshot refused")
	// ErrSnapshotCorrupt: not a backup file, a damaged header, or a
	// payload the table refuses.
	ErrSnapshotCorrupt = fmt.Errorf("%w: corrupt", ErrBadSnapshot)
	// ErrSnapshotTruncated: the file ends before the size its header
	// announces.
	ErrSnapshotTruncated = fmt.Errorf("%w: truncated", ErrBadSnapshot)
	// ErrSnapshotChecksum: the payload does not hash to the header's
	// sha256.
	ErrSnapshotChecksum = fmt.Errorf("%w: checksum mismatch", ErrBadSnapshot)
	// ErrSnapshotFormat: written by a newer build (a newer file format
	// or table format).
	ErrSnapshotFormat = fmt.Errorf("%w: newer format", ErrBadSnapshot)
	// ErrSnapshotTooLarge: the header announces a table larger than a
	// restore takes (fsm.MaxTableBytes).
	ErrSnapshotTooLarge = fmt.Errorf("%w: too large", ErrBadSnapshot)
)

// MaxSnapshotFileBytes bounds a whole backup file: a header line and the
// largest table a restore takes.
const MaxSnapshotFileBytes = maxSnapshotHeader + fsm.MaxTableBytes

// SnapshotHeader is a backup file's header line.
type SnapshotHeader struct {
	Format  int       `json:"format"`
	Index   uint64    `json:"index"`
	Term    uint64    `json:"term"`
	Size    int64     `json:"size"`
	SHA256  string    `json:"sha256"`
	TakenAt time.Time `json:"taken_at"`
	Node    string    `json:"node,omitempty"`
}

// WriteSnapshotFile writes a backup file: h with its format, size and
// checksum set from payload, then payload.
func WriteSnapshotFile(w io.Writer, h SnapshotHeader, payload []byte) error {
	sum := sha256.Sum256(payload)
	h.Format, h.Size, h.SHA256 = SnapshotFormat, int64(len(payload)), hex.EncodeToString(sum[:])
	line, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, snapshotMagic); err != nil {
		return err
	}
	if _, err := w.Write(append(line, '\n')); err != nil {
		return err
	}
	_, err = w.Write(payload)
	return err
}

// ReadSnapshotFile reads a backup file from r and verifies it: header,
// size, checksum, nothing after the payload. It hands the payload to use
// as it streams in; use's verdict counts only once the whole file is
// verified, so a damaged file is reported as damaged (truncated, checksum)
// rather than as whatever use made of it. An error reading r (a network
// failure, a body over its limit) is returned as it is; every other
// refusal wraps one of the ErrSnapshot* errors.
func ReadSnapshotFile(r io.Reader, use func(SnapshotHeader, io.Reader) error) (SnapshotHeader, error) {
	src := &readErrors{r: r}
	br := bufio.NewReaderSize(src, maxSnapshotHeader+1)
	h, err := readSnapshotHeader(br)
	if err != nil {
		if src.err != nil {
			return h, src.err
		}
		return h, err
	}
	hash := sha256.New()
	payload := &countingReader{r: io.TeeReader(io.LimitReader(br, h.Size), hash)}
	useErr := use(h, payload)
	// The rest of the payload, whatever use left of it.
	if _, err := io.Copy(io.Discard, payload); err != nil && src.err == nil {
		return h, err
	}
	if src.err != nil {
		return h, fmt.Errorf("read snapshot: %w", src.err)
	}
	if payload.n < h.Size {
		return h, fmt.Errorf("%w: the payload ends after %d of the %d bytes its header announces", ErrSnapshotTruncated, payload.n, h.Size)
	}
	if _, err := br.Peek(1); err == nil {
		return h, fmt.Errorf("%w: data after the %d-byte payload its header announces", ErrSnapshotCorrupt, h.Size)
	} else if src.err != nil {
		return h, fmt.Errorf("read snapshot: %w", src.err)
	}
	if got := hex.EncodeToString(hash.Sum(nil)); got != h.SHA256 {
		return h, fmt.Errorf("%w: the header says sha256 %s, the payload hashes to %s", ErrSnapshotChecksum, h.SHA256, got)
	}
	if useErr != nil {
		if errors.Is(useErr, ErrBadSnapshot) {
			return h, useErr
		}
		if errors.Is(useErr, fsm.ErrSnapshotVersion) {
			return h, fmt.Errorf("%w: %v", ErrSnapshotFormat, useErr)
		}
		return h, fmt.Errorf("%w: %v", ErrSnapshotCorrupt, useErr)
	}
	return h, nil
}

// ReadSnapshotHeader reads and checks a backup file's header line only,
// not its payload: what a file claims to be, not that it is whole.
func ReadSnapshotHeader(r io.Reader) (SnapshotHeader, error) {
	return readSnapshotHeader(bufio.NewReaderSize(r, maxSnapshotHeader+1))
}

func readSnapshotHeader(br *bufio.Reader) (SnapshotHeader, error) {
	var h SnapshotHeader
	line, err := br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return h, fmt.Errorf("%w: no header line in the first %d bytes: not a lieur snapshot file", ErrSnapshotCorrupt, maxSnapshotHeader)
	case err == io.EOF && len(line) == 0:
		return h, fmt.Errorf("%w: the file is empty", ErrSnapshotTruncated)
	case err == io.EOF && bytes.HasPrefix(line, []byte(snapshotMagic)):
		return h, fmt.Errorf("%w: the file ends inside its header", ErrSnapshotTruncated)
	case err != nil && err != io.EOF:
		return h, err
	}
	if !bytes.HasPrefix(line, []byte(snapshotMagic)) {
		return h, fmt.Errorf("%w: it does not start with %q: not a lieur snapshot file", ErrSnapshotCorrupt, snapshotMagic)
	}
	body := bytes.TrimSuffix(line[len(snapshotMagic):], []byte("\n"))
	// The version first, alone: a newer build's header may hold fields
	// this one does not know, and deserves "newer" rather than "corrupt".
	var v struct {
		Format json.RawMessage `json:"format"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return h, fmt.Errorf("%w: header: %v", ErrSnapshotCorrupt, err)
	}
	format, err := strconv.ParseInt(string(v.Format), 10, 64)
	switch {
	case err != nil || format < 1:
		return h, fmt.Errorf("%w: header: format %s is not a version", ErrSnapshotCorrupt, truncateBytes(v.Format))
	case format > SnapshotFormat:
		return h, fmt.Errorf("%w: file format %d, this build reads up to %d: restore it with a newer lieur", ErrSnapshotFormat, format, SnapshotFormat)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return h, fmt.Errorf("%w: header: %v", ErrSnapshotCorrupt, err)
	}
	if h.Size < 0 {
		return h, fmt.Errorf("%w: header: negative size %d", ErrSnapshotCorrupt, h.Size)
	}
	if h.Size > fsm.MaxTableBytes {
		return h, fmt.Errorf("%w: the header announces a %d-byte table, the most a restore takes is %d", ErrSnapshotTooLarge, h.Size, fsm.MaxTableBytes)
	}
	if sum, err := hex.DecodeString(h.SHA256); err != nil || len(sum) != sha256.Size {
		return h, fmt.Errorf("%w: header: sha256 %q is not 64 hex digits", ErrSnapshotCorrupt, h.SHA256)
	}
	return h, nil
}

// truncateBytes keeps an error message about a value short.
func truncateBytes(b []byte) string {
	if len(b) == 0 {
		return "(none)"
	}
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

// readErrors remembers the first error of r other than io.EOF: a failure
// to read, as opposed to what the bytes say.
type readErrors struct {
	r   io.Reader
	err error
}

func (e *readErrors) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// loadSnapshotFile reads and verifies a backup file and returns its table,
// decoded into a table of its own (fsm.LoadBackup, which checks every
// instance as a snapshot restore does): what it returns can be restored.
func loadSnapshotFile(r io.Reader) (*fsm.FSM, SnapshotHeader, error) {
	var table *fsm.FSM
	h, err := ReadSnapshotFile(r, func(_ SnapshotHeader, payload io.Reader) error {
		var err error
		table, err = fsm.LoadBackup(payload)
		return err
	})
	if err != nil {
		return nil, h, err
	}
	return table, h, nil
}

// SnapshotInfo is what a backup file holds, as `lieur snapshot inspect`
// shows it.
type SnapshotInfo struct {
	SnapshotHeader
	// Instances counts the table's instances, Types per type.
	Instances int            `json:"instances"`
	Types     map[string]int `json:"types"`
	// TableHash is the table's hash as GET /v1/status reported it on the
	// cluster the backup was taken from, at Index. A restore registers
	// every instance anew at its own index, so the restored cluster
	// reports another hash (the same on every binder).
	TableHash string `json:"table_hash"`
}

// InspectSnapshot reads and verifies a backup file (header, size,
// checksum, and every instance of the table) and says what it holds.
func InspectSnapshot(r io.Reader) (SnapshotInfo, error) {
	table, h, err := loadSnapshotFile(r)
	if err != nil {
		return SnapshotInfo{SnapshotHeader: h}, err
	}
	return SnapshotInfo{SnapshotHeader: h, Instances: table.Len(), Types: table.CountByType(), TableHash: table.TableHash()}, nil
}

// SaveSnapshotFile verifies a backup file (as InspectSnapshot) and writes
// it to path atomically: into a temporary file beside it, synced, then
// renamed over path, and the directory synced. A crash leaves either the
// old file or the whole new one, never a torn backup; a file that does not
// verify is not written. The file is private (0600): it holds the whole
// table.
func SaveSnapshotFile(path string, file []byte) (SnapshotInfo, error) {
	info, err := InspectSnapshot(bytes.NewReader(file))
	if err != nil {
		return info, err
	}
	return info, writeFileSynced(path, file)
}
