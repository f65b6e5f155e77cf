package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/httpapi"
	"github.com/lieur/lieur/transport/wire"
)

// The bad-input catalogue: every hostile request gets a 4xx with a clear
// JSON error, and neither the service table nor the Raft log changes.
func TestHostileRequests(t *testing.T) {
	srv, node := newAPIWith(t, nil)
	require.Equal(t, 200, call(t, "POST", srv.URL+"/v1/services", `{"type":"echo","address":"127.0.0.1","port":1,"ttl":"1m"}`).status)
	big := strings.Repeat("a", 64<<10)
	tests := []struct {
		name, method, path, body string
		status                   int
		says                     string // part of the error message
	}{
		{"bad JSON", "POST", "/v1/services", `{"type":`, 400, "JSON"},
		{"not an object", "POST", "/v1/services", `[]`, 400, "JSON"},
		{"string body", "POST", "/v1/services", `"echo"`, 400, "JSON"},
		{"empty body", "POST", "/v1/services", ``, 400, "empty"},
		{"trailing data", "POST", "/v1/services", `{"type":"echo","address":"h","port":1}x`, 400, "after"},
		{"second object", "POST", "/v1/services", `{"type":"echo","address":"h","port":1}{}`, 400, "after"},
		{"duplicate field", "POST", "/v1/services", `{"type":"echo","type":"evil","address":"h","port":1}`, 400, "duplicate key \"type\""},
		{"duplicate nested field", "POST", "/v1/services", `{"type":"echo","address":"h","port":1,"meta":{"k":"a","k":"b"}}`, 400, "duplicate key"},
		{"unknown field", "POST", "/v1/services", `{"type":"echo","address":"h","port":1,"admin":true}`, 400, "unknown field"},
		{"huge number port", "POST", "/v1/services", `{"type":"echo","address":"h","port":1e400}`, 400, "port"},
		{"port beyond int64", "POST", "/v1/services", `{"type":"echo","address":"h","port":99999999999999999999}`, 400, "port"},
		{"negative port", "POST", "/v1/services", `{"type":"echo","address":"h","port":-1}`, 400, "port"},
		{"port zero", "POST", "/v1/services", `{"type":"echo","address":"h","port":0}`, 400, "port"},
		{"port 65536", "POST", "/v1/services", `{"type":"echo","address":"h","port":65536}`, 400, "port"},
		{"port as string", "POST", "/v1/services", `{"type":"echo","address":"h","port":"80"}`, 400, "port"},
		{"port as float", "POST", "/v1/services", `{"type":"echo","address":"h","port":80.5}`, 400, "port"},
		{"port null type", "POST", "/v1/services", `{"type":null,"address":"h","port":1}`, 400, "type"},
		{"type as number", "POST", "/v1/services", `{"type":7,"address":"h","port":1}`, 400, "type"},
		{"64 KiB type", "POST", "/v1/services", `{"type":"` + big[:60000] + `","address":"h","port":1}`, 400, "type"},
		{"body over 64 KiB", "POST", "/v1/services", `{"type":"echo","address":"h","port":1,"meta":{"k":"` + big + `"}}`, 400, "exceeds"},
		{"upper-case type", "POST", "/v1/services", `{"type":"ECHO","address":"h","port":1}`, 400, "type"},
		{"type with slash", "POST", "/v1/services", `{"type":"a/b","address":"h","port":1}`, 400, "type"},
		{"type with control char", "POST", "/v1/services", `{"type":"ec\u0000ho","address":"h","port":1}`, 400, "type"},
		{"address with control char", "POST", "/v1/services", `{"type":"echo","address":"h\u0007","port":1}`, 400, "address"},
		{"address url", "POST", "/v1/services", `{"type":"echo","address":"http://evil/","port":1}`, 400, "address"},
		{"address too long", "POST", "/v1/services", `{"type":"echo","address":"` + strings.Repeat("a.", 200) + `a","port":1}`, 400, "address"},
		{"id path traversal", "POST", "/v1/services", `{"type":"echo","address":"h","port":1,"id":"../../etc/passwd"}`, 400, "id"},
		{"id with space", "POST", "/v1/services", `{"type":"echo","address":"h","port":1,"id":"a b"}`, 400, "id"},
		{"id too long", "POST", "/v1/services", `{"type":"echo","address":"h","port":1,"id":"` + strings.Repeat("i", 200) + `"}`, 400, "id"},
		{"meta control char", "POST", "/v1/services", `{"type":"echo","address":"h","port":1,"meta":{"k":"\u001b[31m"}}`, 400, "meta"},
		{"meta empty key", "POST", "/v1/services", `{"type":"echo","address":"h","port":1,"meta":{"":"v"}}`, 400, "meta"},
		{"ttl negative", "POST", "/v1/services", `{"type":"echo","address":"h","port":1,"ttl":"-5s"}`, 400, "ttl"},
		{"ttl huge", "POST", "/v1/services", `{"type":"echo","address":"h","port":1,"ttl":"9999999h"}`, 400, "ttl"},
		{"ttl number", "POST", "/v1/services", `{"type":"echo","address":"h","port":1,"ttl":10}`, 400, "ttl"},
		{"wrong method on services", "PUT", "/v1/services", ``, 405, "not allowed"},
		{"wrong method on lookup", "DELETE", "/v1/lookup/echo", ``, 405, "not allowed"},
		{"unknown path", "GET", "/v2/services", ``, 404, "no such endpoint"},
		{"path traversal", "GET", "/v1/lookup/../../etc/passwd", ``, 307, "canonical"},
		{"encoded traversal id", "DELETE", "/v1/services/..%2F..%2Fetc", ``, 404, "no such endpoint"},
		{"deregister unknown", "DELETE", "/v1/services/nope", ``, 404, "unknown"},
		{"lookup bad type", "GET", "/v1/lookup/Bad_Type", ``, 400, "type"},
		{"lookup bad wait", "GET", "/v1/lookup/echo?wait=soon", ``, 400, "wait"},
		{"lookup negative wait", "GET", "/v1/lookup/echo?wait=-1s", ``, 400, "wait"},
		{"services bad index", "GET", "/v1/services?index=-1", ``, 400, "index"},
		{"consistent not bool", "GET", "/v1/services?consistent=maybe", ``, 400, "consistent"},
		{"consistent and stale", "GET", "/v1/services?consistent=true&stale=true", ``, 400, "exclusive"},
		{"bad min_index", "GET", "/v1/lookup/echo?min_index=x", ``, 400, "min_index"},
		{"report without id", "POST", "/v1/reports", `{}`, 400, "id is required"},
		{"report bad id", "POST", "/v1/reports", `{"id":"../x"}`, 400, "id"},
		{"report unknown id", "POST", "/v1/reports", `{"id":"nobody"}`, 404, "unknown"},
		{"heartbeat unknown", "PUT", "/v1/services/nobody/heartbeat", ``, 404, "unknown"},
		{"bad request id", "DELETE", "/v1/services/echo-127.0.0.1-1", ``, 400, "request id"},
		{"unknown id with a fresh request id", "DELETE", "/v1/services/nobody", ``, 404, "unknown"},
		{"join missing fields", "POST", "/v1/cluster/join", `{"id":"n9"}`, 400, "required"},
		{"join bad raft address", "POST", "/v1/cluster/join", `{"id":"n9","raft_addr":"nohostport","http_addr":"127.0.0.1:2"}`, 400, "raft_addr"},
		{"join bad http address", "POST", "/v1/cluster/join", `{"id":"n9","raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1"}`, 400, "http_addr"},
		{"join bad id", "POST", "/v1/cluster/join", `{"id":"../n","raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}`, 400, "id"},
		{"internal apply garbage", "POST", "/v1/internal/apply", `{"command":{"type":"nope/v9","body":{}}}`, 400, "command"},
		{"internal apply register without id", "POST", "/v1/internal/apply", `{"command":{"type":"register/v1","body":{"id":"","type":"echo","address":"127.0.0.1","port":1}}}`, 400, "id"},
		{"internal apply register without type", "POST", "/v1/internal/apply", `{"command":{"type":"register/v1","body":{"id":"x","type":"","address":"127.0.0.1","port":1}}}`, 400, "type"},
		{"internal apply register port 0", "POST", "/v1/internal/apply", `{"command":{"type":"register/v1","body":{"id":"x","type":"echo","address":"127.0.0.1","port":0}}}`, 400, "port"},
		{"internal apply node meta without address", "POST", "/v1/internal/apply", `{"command":{"type":"node-meta/v1","body":{"node_id":"n9","http_addr":""}}}`, 400, "http_addr"},
		{"internal apply a batch", "POST", "/v1/internal/apply", `{"command":{"type":"batch/v1","body":{"commands":[{"type":"register/v1","body":{"id":"x","type":"echo","address":"127.0.0.1","port":1}}]}}}`, 400, "batch"},
		{"internal apply from a stranger", "POST", "/v1/internal/apply", `{"command":{"type":"register/v1","body":{"id":"x","type":"echo","address":"127.0.0.1","port":1}}}`, 403, "only binders of this cluster"},
		{"internal read index from a stranger", "GET", "/v1/internal/read-index", ``, 403, "only binders of this cluster"},
		{"text/plain body", "POST", "/v1/services", `{"type":"echo","address":"h","port":1}`, 415, "Content-Type: application/json"},
		{"form body", "POST", "/v1/reports", `id=echo-127.0.0.1-1`, 415, "Content-Type: application/json"},
		{"no content type", "POST", "/v1/reports", `{"id":"echo-127.0.0.1-1"}`, 415, "got none"},
		{"text/plain delete body", "DELETE", "/v1/services/echo-127.0.0.1-1", `x`, 415, "JSON"},
	}
	// Content types other than JSON, by case name; the others send JSON.
	contentTypes := map[string]string{"text/plain body": "text/plain", "form body": "application/x-www-form-urlencoded",
		"no content type": "", "text/plain delete body": "text/plain;charset=UTF-8"}
	require.GreaterOrEqual(t, len(tests), 40)
	before := call(t, "GET", srv.URL+"/v1/status", "").body
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			require.NoError(t, err)
			switch tc.name {
			case "bad request id":
				req.Header.Set("X-Lieur-Request-Id", "bad id!")
			case "unknown id with a fresh request id":
				// A request id must not get a bogus deregistration into
				// the log (checked after the loop).
				req.Header.Set("X-Lieur-Request-Id", "fresh-key-1")
			}
			ctype, odd := contentTypes[tc.name]
			if !odd {
				ctype = "application/json"
			}
			if tc.body != "" && ctype != "" {
				req.Header.Set("Content-Type", ctype)
			}
			if strings.HasPrefix(tc.path, "/v1/internal/") && !strings.Contains(tc.name, "stranger") {
				req.Header.Set(wire.HeaderCluster, node.ClusterID())
			}
			client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := client.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			var body struct{ Error string }
			require.NoError(t, decodeJSON(resp, &body), "the error is a JSON body")
			assert.Equal(t, tc.status, resp.StatusCode, body.Error)
			assert.Contains(t, body.Error, tc.says)
		})
	}
	after := call(t, "GET", srv.URL+"/v1/status", "").body
	assert.Equal(t, before["table_hash"], after["table_hash"], "the table is unchanged")
	assert.Equal(t, before["last_log_index"], after["last_log_index"], "nothing reached the log")
}

func TestReportsAreRateLimited(t *testing.T) {
	srv := newAPI(t)
	limited := 0
	for i := 0; i < 200 && limited == 0; i++ {
		a := call(t, "POST", srv.URL+"/v1/reports", fmt.Sprintf(`{"id":"nobody-%d"}`, i))
		if a.status == http.StatusTooManyRequests {
			limited++
			assert.Contains(t, a.raw, "too many reports")
			assert.NotEmpty(t, a.header.Get("Retry-After"))
		}
	}
	assert.Equal(t, 1, limited, "a burst of reports from one address is cut off with 429")
}

func decodeJSON(resp *http.Response, v any) error {
	return json.NewDecoder(resp.Body).Decode(v)
}

// brokenBinder panics on every call: its embedded Binder is nil.
type brokenBinder struct{ httpapi.Binder }

// No panic reaches a client: it gets a 500 naming a request id, which the
// log line of the panic carries too.
func TestPanicIsA500WithRequestID(t *testing.T) {
	var logs bytes.Buffer
	logger := hclog.New(&hclog.LoggerOptions{Output: &logs})
	srv := httptest.NewServer(httpapi.NewServer(brokenBinder{}, logger))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/status")
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	var body struct{ Error string }
	require.NoError(t, decodeJSON(resp, &body))
	id, ok := strings.CutPrefix(body.Error, "internal error (request id ")
	require.True(t, ok, body.Error)
	id = strings.TrimSuffix(id, ")")
	assert.Contains(t, logs.String(), "request_id="+id)
}
