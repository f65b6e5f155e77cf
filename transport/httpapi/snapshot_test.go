package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/httpapi"
	"github.com/lieur/lieur/transport/wire"
)

// snapshotCall sends a backup or restore request with an optional token,
// and checks that an error comes as a JSON body.
func snapshotCall(t *testing.T, method, url, contentType, token string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	status, h, data := roundTrip(t, req, token)
	if status/100 != 2 {
		require.Equal(t, "application/json", h.Get("Content-Type"), "error of %s %s: %q", method, url, data)
		var e wire.Error
		require.NoError(t, json.Unmarshal(data, &e), "%q", data)
		require.NotEmpty(t, e.Error)
	}
	return status, h, data
}

func registerVia(t *testing.T, base, id string, port int) {
	t.Helper()
	a := call(t, "POST", base+"/v1/services", fmt.Sprintf(`{"type":"echo","address":"127.0.0.1","port":%d,"id":%q}`, port, id))
	require.Equal(t, 200, a.status, a.raw)
}

func servicesOf(t *testing.T, base string) []string {
	t.Helper()
	a := call(t, "GET", base+"/v1/services", "")
	require.Equal(t, 200, a.status)
	var resp wire.ServicesResponse
	require.NoError(t, json.Unmarshal([]byte(a.raw), &resp))
	var ids []string
	for _, s := range resp.Services {
		ids = append(ids, s.ID)
	}
	return ids
}

// rewrapFile makes a well-formed backup file around a payload.
func rewrapFile(t *testing.T, payload string) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, binder.WriteSnapshotFile(&buf, binder.SnapshotHeader{Index: 1, Term: 1}, []byte(payload)))
	return buf.Bytes()
}

func TestSnapshotSaveAndRestore(t *testing.T) {
	srv, node := newAPIWith(t, nil)
	registerVia(t, srv.URL, "a", 1)
	registerVia(t, srv.URL, "b", 2)

	status, h, file := snapshotCall(t, "GET", srv.URL+"/v1/snapshot", "", "", nil)
	require.Equal(t, 200, status, "%s", file)
	assert.Equal(t, wire.ContentTypeSnapshot, h.Get("Content-Type"))
	info, err := binder.InspectSnapshot(bytes.NewReader(file))
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprint(info.Index), h.Get(wire.HeaderIndex))
	assert.Equal(t, 2, info.Instances)

	registerVia(t, srv.URL, "c", 3)
	a := call(t, "DELETE", srv.URL+"/v1/services/a", "")
	require.Equal(t, 200, a.status)
	require.Equal(t, []string{"b", "c"}, servicesOf(t, srv.URL))
	before := node.Status()

	header, payload, _ := bytes.Cut(file, []byte("\n"))
	flipped := bytes.Clone(file)
	flipped[len(flipped)-3] ^= 1
	newer := bytes.Replace(file, []byte(`{"format":1,`), []byte(`{"format":2,`), 1)
	refused := []struct {
		name, contentType string
		body              []byte
		status            int
		msg               string
	}{
		{"corrupt", wire.ContentTypeSnapshot, append([]byte("lieur-snapshot {nope\n"), payload...), 400, "corrupt"},
		{"not a backup", wire.ContentTypeSnapshot, payload, 400, "not a lieur snapshot file"},
		{"truncated", wire.ContentTypeSnapshot, file[:len(file)-20], 400, "truncated"},
		{"header only", wire.ContentTypeSnapshot, header, 400, "truncated"},
		{"wrong checksum", wire.ContentTypeSnapshot, flipped, 400, "checksum mismatch"},
		{"newer format", wire.ContentTypeSnapshot, newer, 400, "newer format"},
		{"newer table format", wire.ContentTypeSnapshot, rewrapFile(t, `{"version":2,"services":[]}`), 400, "newer format"},
		{"table breaking a rule", wire.ContentTypeSnapshot, rewrapFile(t, `{"version":1,"type_index":{"echo":1},"services":[{"id":"x","type":"echo","address":"127.0.0.1","port":0}]}`), 400, "port"},
		{"empty", wire.ContentTypeSnapshot, []byte{}, 400, "empty"},
		{"JSON content type", "application/json", file, 415, "application/octet-stream"},
		{"no content type", "", file, 415, "must be JSON"},
		{"text", "text/plain", file, 415, "must be JSON"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			status, _, data := snapshotCall(t, "PUT", srv.URL+"/v1/snapshot", tc.contentType, "", tc.body)
			assert.Equal(t, tc.status, status, "%s", data)
			assert.Contains(t, string(data), tc.msg)
		})
	}
	after := node.Status()
	assert.Equal(t, before.TableHash, after.TableHash, "a refused restore changes nothing")
	assert.Equal(t, before.LastLogIndex, after.LastLogIndex, "a refused restore writes nothing to the log")
	assert.Equal(t, []string{"b", "c"}, servicesOf(t, srv.URL))

	status, _, data := snapshotCall(t, "PUT", srv.URL+"/v1/snapshot", wire.ContentTypeSnapshot+"; charset=binary", "", file)
	require.Equal(t, 200, status, "%s", data)
	var res wire.SnapshotRestoreResponse
	require.NoError(t, json.Unmarshal(data, &res))
	assert.Equal(t, 2, res.Services)
	assert.Equal(t, 1, res.Types)
	assert.Equal(t, info.Index, res.BackupIndex)
	assert.Equal(t, info.Term, res.BackupTerm)
	assert.Greater(t, res.Index, before.LastLogIndex)
	assert.Equal(t, []string{"a", "b"}, servicesOf(t, srv.URL))
	a = call(t, "GET", srv.URL+"/v1/services/echo", "")
	assert.Equal(t, fmt.Sprint(res.Index), a.header.Get(wire.HeaderIndex), "the type's index is the restore's")
}

// The backup endpoints need an admin token when tokens are on.
func TestSnapshotNeedsAdmin(t *testing.T) {
	const cluster, admin, register = "c1c1c1c1c1c1c1c1c1", "a1a1a1a1a1a1a1a1a1", "r1r1r1r1r1r1r1r1r1"
	auth, err := httpapi.ParseTokens(strings.NewReader(cluster + " cluster\n" + admin + " admin\n" + register + " register\n"))
	require.NoError(t, err)
	srv, _ := newAPIWith(t, func(n *binder.Node) []httpapi.Option { return []httpapi.Option{httpapi.WithAuth(auth)} })

	status, _, _ := snapshotCall(t, "GET", srv.URL+"/v1/snapshot", "", "", nil)
	assert.Equal(t, 401, status)
	status, _, _ = snapshotCall(t, "GET", srv.URL+"/v1/snapshot", "", register, nil)
	assert.Equal(t, 403, status)
	status, _, file := snapshotCall(t, "GET", srv.URL+"/v1/snapshot", "", admin, nil)
	require.Equal(t, 200, status)

	status, _, _ = snapshotCall(t, "PUT", srv.URL+"/v1/snapshot", wire.ContentTypeSnapshot, "", file)
	assert.Equal(t, 401, status)
	status, _, _ = snapshotCall(t, "PUT", srv.URL+"/v1/snapshot", wire.ContentTypeSnapshot, register, file)
	assert.Equal(t, 403, status)
	status, _, data := snapshotCall(t, "PUT", srv.URL+"/v1/snapshot", wire.ContentTypeSnapshot, admin, file)
	assert.Equal(t, 200, status, "%s", data)
}
