package client

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/wire"
)

// snapshotBinder answers /v1/snapshot as a binder does in one situation:
// with a backup file, a restore's result, or an error status and code.
type snapshotBinder struct {
	status int
	code   string
	file   []byte
	calls  atomic.Int32
	got    atomic.Pointer[[]byte] // the last restore's body
	token  atomic.Pointer[string]
}

func (b *snapshotBinder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.calls.Add(1)
	tok := r.Header.Get("Authorization")
	b.token.Store(&tok)
	if r.URL.Path != "/v1/snapshot" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if b.status != http.StatusOK {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(b.status)
		_ = json.NewEncoder(w).Encode(wire.Error{Error: "refused", Code: b.code})
		return
	}
	switch r.Method {
	case http.MethodGet:
		w.Header().Set("Content-Type", wire.ContentTypeSnapshot)
		_, _ = w.Write(b.file)
	case http.MethodPut:
		if r.Header.Get("Content-Type") != wire.ContentTypeSnapshot {
			w.WriteHeader(http.StatusUnsupportedMediaType)
			return
		}
		body, _ := io.ReadAll(r.Body)
		b.got.Store(&body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(wire.SnapshotRestoreResponse{Index: 42, Services: 3, Types: 2})
	}
}

func startSnapshotBinder(t *testing.T, b *snapshotBinder) string {
	t.Helper()
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	return srv.URL
}

// A binder that is down, or that has no leader to take the backup, is
// skipped for another; the file comes back as it was sent.
func TestSaveSnapshotFailsOver(t *testing.T) {
	noLeader := &snapshotBinder{status: 503, code: wire.CodeNoLeader}
	crashing := &snapshotBinder{status: 500}
	good := &snapshotBinder{status: 200, file: []byte("lieur-snapshot {}\nbytes")}
	down := deadBinder(t)
	c, err := New(Config{Binders: []string{down, startSnapshotBinder(t, noLeader), startSnapshotBinder(t, crashing), startSnapshotBinder(t, good)}, Token: "tok"})
	require.NoError(t, err)
	defer c.Close()
	for i := 0; i < 5; i++ { // every order of the binders ends at the good one
		file, err := c.SaveSnapshot(testCtx(t))
		require.NoError(t, err)
		assert.Equal(t, good.file, file)
	}
	assert.Equal(t, "Bearer tok", *good.token.Load())
}

// A refusal is final: the same file would be refused by any binder.
func TestRestoreSnapshotRefusalIsFinal(t *testing.T) {
	refusing := []*snapshotBinder{{status: 400}, {status: 400}}
	c, err := New(Config{Binders: []string{startSnapshotBinder(t, refusing[0]), startSnapshotBinder(t, refusing[1])}})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.RestoreSnapshot(testCtx(t), []byte("damaged"))
	var apiErr *APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 400, apiErr.Status)
	assert.Equal(t, int32(1), refusing[0].calls.Load()+refusing[1].calls.Load(), "asked once")
}

// A restore goes to another binder only when the first certainly did not
// apply it; one whose outcome is unknown is not sent again.
func TestRestoreSnapshotRetriesOnlyWhatWasNotApplied(t *testing.T) {
	noLeader := &snapshotBinder{status: 503, code: wire.CodeNoLeader}
	good := &snapshotBinder{status: 200}
	c, err := New(Config{Binders: []string{deadBinder(t), startSnapshotBinder(t, noLeader), startSnapshotBinder(t, good)}})
	require.NoError(t, err)
	defer c.Close()
	res, err := c.RestoreSnapshot(testCtx(t), []byte("file"))
	require.NoError(t, err)
	assert.Equal(t, uint64(42), res.Index)
	assert.Equal(t, []byte("file"), *good.got.Load())

	unknown := []*snapshotBinder{{status: 503, code: wire.CodeOutcomeUnknown}, {status: 503, code: wire.CodeOutcomeUnknown}}
	c2, err := New(Config{Binders: []string{startSnapshotBinder(t, unknown[0]), startSnapshotBinder(t, unknown[1])}})
	require.NoError(t, err)
	defer c2.Close()
	_, err = c2.RestoreSnapshot(testCtx(t), []byte("file"))
	assert.True(t, errors.Is(err, ErrOutcomeUnknown), "%v", err)
	assert.Equal(t, int32(1), unknown[0].calls.Load()+unknown[1].calls.Load(), "not sent again")
}

// deadBinder is the URL of a port nothing listens on.
func deadBinder(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return "http://" + addr
}
