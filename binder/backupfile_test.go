package binder_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/fsm"
)

// backupFile writes a backup file of a table of three instances of two
// types.
func backupFile(t *testing.T) []byte {
	t.Helper()
	table := fsm.New(nil)
	for i, c := range []fsm.Command{
		fsm.RegisterCmd{ID: "a", Type: "echo", Address: "127.0.0.1", Port: 1},
		fsm.RegisterCmd{ID: "b", Type: "echo", Address: "127.0.0.1", Port: 2, Meta: map[string]string{"k": "v"}},
		fsm.RegisterCmd{ID: "c", Type: "time", Address: "h.example", Port: 3},
	} {
		require.NoError(t, table.ApplyCommand(uint64(i+1), c).Err)
	}
	payload, applied := table.BackupTable()
	var buf bytes.Buffer
	require.NoError(t, binder.WriteSnapshotFile(&buf, binder.SnapshotHeader{Index: applied, Term: 2, TakenAt: time.Unix(1700000000, 0).UTC(), Node: "n1"}, payload))
	return buf.Bytes()
}

func TestBackupFileRoundTrip(t *testing.T) {
	file := backupFile(t)
	assert.True(t, bytes.HasPrefix(file, []byte("lieur-snapshot {")), "head -1 shows the header")
	info, err := binder.InspectSnapshot(bytes.NewReader(file))
	require.NoError(t, err)
	assert.Equal(t, binder.SnapshotFormat, info.Format)
	assert.Equal(t, uint64(3), info.Index)
	assert.Equal(t, uint64(2), info.Term)
	assert.Equal(t, "n1", info.Node)
	assert.Equal(t, 3, info.Instances)
	assert.Equal(t, map[string]int{"echo": 2, "time": 1}, info.Types)
	assert.Len(t, info.SHA256, 64)
	header, _, _ := bytes.Cut(file, []byte("\n"))
	assert.Equal(t, int64(len(file)-len(header)-1), info.Size)
}

// replaceHeader swaps the JSON of a file's header line for h.
func replaceHeader(file []byte, h string) []byte {
	_, payload, _ := bytes.Cut(file, []byte("\n"))
	return append([]byte("lieur-snapshot "+h+"\n"), payload...)
}

// Every damage a file can suffer is refused with an error that says
// which, wrapping ErrBadSnapshot.
func TestBackupFileRefusals(t *testing.T) {
	file := backupFile(t)
	header, payload, _ := bytes.Cut(file, []byte("\n"))
	flipped := bytes.Clone(file)
	flipped[len(flipped)-10] ^= 0x20
	var h struct {
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	}
	require.NoError(t, json.Unmarshal(header[len("lieur-snapshot "):], &h))
	headerWith := func(format string, extra string) []byte {
		return replaceHeader(file, fmt.Sprintf(`{"format":%s,"index":3,"term":2,"size":%d,"sha256":%q%s}`, format, h.Size, h.SHA256, extra))
	}
	cases := []struct {
		name string
		file []byte
		want error
		msg  string
	}{
		{"empty", nil, binder.ErrSnapshotTruncated, "empty"},
		{"inside the header", file[:len(header)/2], binder.ErrSnapshotTruncated, "inside its header"},
		{"payload cut", file[:len(file)-7], binder.ErrSnapshotTruncated, "ends after"},
		{"header only", file[:len(header)+1], binder.ErrSnapshotTruncated, "ends after 0"},
		{"flipped byte", flipped, binder.ErrSnapshotChecksum, "hashes to"},
		{"data after", append(bytes.Clone(file), "more"...), binder.ErrSnapshotCorrupt, "data after"},
		{"not a backup", payload, binder.ErrSnapshotCorrupt, "not a lieur snapshot file"},
		{"newer format", headerWith("2", `,"compression":"zstd"`), binder.ErrSnapshotFormat, "newer lieur"},
		{"format not a number", headerWith(`"one"`, ""), binder.ErrSnapshotCorrupt, "format"},
		{"unknown field", headerWith("1", `,"x":1`), binder.ErrSnapshotCorrupt, "unknown field"},
		{"bad checksum field", replaceHeader(file, fmt.Sprintf(`{"format":1,"size":%d,"sha256":"abc"}`, h.Size)), binder.ErrSnapshotCorrupt, "64 hex"},
		{"too large", replaceHeader(file, fmt.Sprintf(`{"format":1,"size":%d,"sha256":%q}`, fsm.MaxTableBytes+1, h.SHA256)), binder.ErrSnapshotTooLarge, "most a restore takes"},
		{"no header line", bytes.Repeat([]byte("x"), 5000), binder.ErrSnapshotCorrupt, "no header line"},
		{"newer table inside", rewrap(t, `{"version":9,"services":[]}`), binder.ErrSnapshotFormat, "unsupported snapshot version"},
		{"table breaks a rule", rewrap(t, `{"version":1,"type_index":{"t":1},"services":[{"id":"x","type":"T T","address":"127.0.0.1","port":1}]}`), binder.ErrSnapshotCorrupt, "restore snapshot"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := binder.InspectSnapshot(bytes.NewReader(tc.file))
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.want)
			assert.ErrorIs(t, err, binder.ErrBadSnapshot)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

// rewrap makes a well-formed file (right size and checksum) around a
// payload.
func rewrap(t *testing.T, payload string) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, binder.WriteSnapshotFile(&buf, binder.SnapshotHeader{Index: 1, Term: 1}, []byte(payload)))
	return buf.Bytes()
}

// A failure to read is reported as such, not as a damaged file.
func TestBackupFileReadError(t *testing.T) {
	file := backupFile(t)
	boom := errors.New("connection reset")
	_, err := binder.InspectSnapshot(io.MultiReader(bytes.NewReader(file[:len(file)/2]), errReader{boom}))
	assert.ErrorIs(t, err, boom)
	assert.NotErrorIs(t, err, binder.ErrBadSnapshot)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// Whatever the bytes, reading a backup file never panics, and a file it
// accepts is exactly one it would write: the header's size and checksum
// are the payload's.
func FuzzSnapshotFile(f *testing.F) {
	var good bytes.Buffer
	table := fsm.New(nil)
	table.ApplyCommand(1, fsm.RegisterCmd{ID: "a", Type: "echo", Address: "127.0.0.1", Port: 1})
	payload, _ := table.BackupTable()
	_ = binder.WriteSnapshotFile(&good, binder.SnapshotHeader{Index: 1, Term: 1}, payload)
	f.Add(good.Bytes())
	f.Add(good.Bytes()[:good.Len()/2])
	f.Add([]byte("lieur-snapshot {\"format\":1,\"size\":-1}\n"))
	f.Add([]byte("lieur-snapshot {\"format\":1e400}\n"))
	f.Add([]byte("lieur-snapshot null\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := binder.InspectSnapshot(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, binder.ErrBadSnapshot) {
				t.Fatalf("a refusal that is not ErrBadSnapshot: %v", err)
			}
			return
		}
		_, rest, _ := bytes.Cut(data, []byte("\n"))
		var again bytes.Buffer
		if err := binder.WriteSnapshotFile(&again, info.SnapshotHeader, rest); err != nil {
			t.Fatal(err)
		}
		if _, err := binder.InspectSnapshot(&again); err != nil {
			t.Fatalf("an accepted file does not survive a rewrite: %v", err)
		}
	})
}
