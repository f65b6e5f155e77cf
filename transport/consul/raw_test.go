package consul_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/consul"
)

type answer struct {
	status int
	header http.Header
	raw    string
	err    string // the JSON error's message, if any
	code   string
}

// do sends a raw request; a body goes without a Content-Type, as
// python-consul sends it.
func do(t *testing.T, method, url, body string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(data)}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error, Code string }
		require.NoError(t, json.Unmarshal(data, &e), "error body %q is JSON", data)
		require.NotEmpty(t, e.Error, "error body %q has a message", data)
		a.err, a.code = e.Error, e.Code
	}
	return a
}

// Empty results are [] or {}, never null, and every read carries Consul's
// query headers with an index above 0.
func TestEmptyResultsAreNotNull(t *testing.T) {
	b := newBinder(t, nil)
	for path, want := range map[string]string{
		"/v1/catalog/services":        "{}",
		"/v1/catalog/service/web":     "[]",
		"/v1/catalog/nodes":           "[]",
		"/v1/health/service/web":      "[]",
		"/v1/health/checks/web":       "[]",
		"/v1/health/state/any":        "[]",
		"/v1/health/state/critical":   "[]",
		"/v1/health/state/nonsense":   "[]",
		"/v1/agent/services":          "{}",
		"/v1/agent/checks":            "{}",
		"/v1/status/peers":            `["` + b.raftAddr + `"]`,
		"/v1/catalog/datacenters":     `["dc1"]`,
		"/v1/health/service/web?tag=": "[]",
	} {
		a := do(t, http.MethodGet, b.url+path, "")
		require.Equal(t, http.StatusOK, a.status, path)
		assert.Equal(t, want, strings.TrimSpace(a.raw), path)
		assert.Equal(t, "application/json", a.header.Get("Content-Type"), path)
		if strings.HasPrefix(path, "/v1/status") || strings.HasPrefix(path, "/v1/catalog/datacenters") {
			continue
		}
		idx, err := strconv.ParseUint(a.header.Get("X-Consul-Index"), 10, 64)
		require.NoError(t, err, path)
		assert.Positive(t, idx, path)
		assert.Equal(t, "true", a.header.Get("X-Consul-KnownLeader"), path)
		assert.Equal(t, "0", a.header.Get("X-Consul-LastContact"), path+": the leader")
		assert.Equal(t, "leader", a.header.Get("X-Consul-Effective-Consistency"), path)
	}
	// An instance without tags or meta shows [] and {} in them too.
	a := do(t, http.MethodPut, b.url+"/v1/agent/service/register", `{"Name":"web","Address":"10.0.0.5","Port":80,"Check":null,"Checks":null}`)
	require.Equal(t, http.StatusOK, a.status, a.raw)
	a = do(t, http.MethodGet, b.url+"/v1/health/service/web", "")
	assert.Contains(t, a.raw, `"Tags":[]`)
	assert.Contains(t, a.raw, `"Meta":{}`)
	a = do(t, http.MethodGet, b.url+"/v1/catalog/service/web", "")
	assert.Contains(t, a.raw, `"ServiceTags":[]`)
	assert.Contains(t, a.raw, `"ServiceID":"web-10.0.0.5-80"`, "lieur's default id: name-address-port")
}

// Every endpoint of Consul's API that lieur does not serve answers 404
// with a JSON body naming it; lieur's own paths stay lieur's.
func TestUnsupportedEndpoints(t *testing.T) {
	b := newBinder(t, nil)
	for _, tc := range []struct{ method, path, why string }{
		{http.MethodGet, "/v1/kv/config/db", "key/value store"},
		{http.MethodPut, "/v1/kv/config/db", "key/value store"},
		{http.MethodPut, "/v1/session/create", "sessions"},
		{http.MethodGet, "/v1/acl/tokens", "ACL"},
		{http.MethodGet, "/v1/query", "prepared queries"},
		{http.MethodGet, "/v1/namespaces", "namespaces"},
		{http.MethodGet, "/v1/partitions", "partitions"},
		{http.MethodGet, "/v1/connect/ca/roots", "Connect"},
		{http.MethodGet, "/v1/agent/members", "/v1/agent/"},
		{http.MethodPut, "/v1/agent/check/register", "/v1/agent/"},
		{http.MethodPut, "/v1/catalog/register", "/v1/catalog/"},
		{http.MethodGet, "/v1/health/connect/web", "/v1/health/"},
		{http.MethodGet, "/v1/status/raft", "/v1/status/"},
		{http.MethodGet, "/v1/internal/ui/services", "UI"},
	} {
		a := do(t, tc.method, b.url+tc.path, "")
		require.Equal(t, http.StatusNotFound, a.status, "%s %s", tc.method, tc.path)
		assert.Equal(t, "unsupported", a.code, tc.path)
		assert.Contains(t, a.err, "unsupported Consul endpoint: "+tc.method+" "+tc.path, tc.path)
		assert.Contains(t, a.err, tc.why, tc.path)
		assert.Contains(t, a.err, "docs/consul.md", tc.path)
	}

	// Through the Go client: readable, and KV reads as an empty store.
	c := b.client(t, "")
	_, _, err := c.Session().Create(nil, nil)
	statusErr(t, err, 404, "unsupported Consul endpoint")

	// lieur's own paths next to Consul's stay lieur's.
	a := do(t, http.MethodGet, b.url+"/v1/status", "")
	require.Equal(t, http.StatusOK, a.status)
	assert.Contains(t, a.raw, `"id":"n1"`)
	a = do(t, http.MethodGet, b.url+"/v1/services", "")
	require.Equal(t, http.StatusOK, a.status)

	// A known Consul path with another method: 405 and Consul's Allow.
	a = do(t, http.MethodGet, b.url+"/v1/agent/service/deregister/web-1", "")
	require.Equal(t, http.StatusMethodNotAllowed, a.status)
	assert.Equal(t, "OPTIONS,PUT", a.header.Get("Allow"))
	assert.Equal(t, "method GET not allowed", a.err)
}

// Registrations are checked in Consul's order with its messages, then for
// what lieur cannot honour.
func TestRegistrationValidation(t *testing.T) {
	b := newBinder(t, nil)
	tests := []struct {
		name, body string
		status     int
		errHas     string
	}{
		{"minimal, checks null", `{"Name":"web","Address":"10.0.0.5","Port":80,"Check":null,"Checks":null}`, 200, ""},
		{"lower-case keys (python-consul)", `{"name":"web","id":"w2","address":"10.0.0.5","port":81,"check":{"ttl":"10s","status":"passing"}}`, 200, ""},
		{"durations in nanoseconds", `{"Name":"web","ID":"w3","Address":"10.0.0.5","Port":82,"Check":{"TTL":10000000000}}`, 200, ""},
		{"empty check is skipped", `{"Name":"web","ID":"w4","Address":"10.0.0.5","Port":83,"Check":{}}`, 200, ""},
		{"no body", ``, 400, "Request decode failed: EOF"},
		{"bad JSON", `{"Name":`, 400, "Request decode failed"},
		{"no name", `{"Address":"10.0.0.5","Port":80}`, 400, "Missing service name"},
		{"any address", `{"Name":"web","Address":"0.0.0.0","Port":80}`, 400, "Invalid service address"},
		{"name not a DNS label", `{"Name":"Web_API","Address":"10.0.0.5","Port":80}`, 400, `Invalid service name "Web_API": lieur service names are DNS labels`},
		{"weights", `{"Name":"web","Address":"10.0.0.5","Port":80,"Weights":{"Passing":0,"Warning":1}}`, 400, "Invalid Weights: Passing must be greater than 0"},
		{"script check", `{"Name":"web","Address":"10.0.0.5","Port":80,"Check":{"Args":["/bin/true"],"Interval":"10s"}}`, 400, "Invalid check: lieur does not run script checks"},
		{"grpc check", `{"Name":"web","Address":"10.0.0.5","Port":80,"Check":{"GRPC":"10.0.0.5:80","Interval":"10s"}}`, 400, "lieur does not run grpc checks"},
		{"docker check", `{"Name":"web","Address":"10.0.0.5","Port":80,"Check":{"DockerContainerID":"abc","Args":["x"],"Interval":"10s"}}`, 400, "lieur does not run docker checks"},
		{"http without interval", `{"Name":"web","Address":"10.0.0.5","Port":80,"Check":{"HTTP":"http://10.0.0.5/"}}`, 400, "Invalid check: Interval must be > 0"},
		{"ttl and interval", `{"Name":"web","Address":"10.0.0.5","Port":80,"Check":{"TTL":"10s","Interval":"10s"}}`, 400, "Interval and TTL cannot both be specified"},
		{"no kind", `{"Name":"web","Address":"10.0.0.5","Port":80,"Checks":[{"Name":"x"}]}`, 400, "TTL must be > 0 for TTL checks"},
		{"bad status", `{"Name":"web","Address":"10.0.0.5","Port":80,"Check":{"TTL":"10s","Status":"ok"}}`, 400, "Status for checks must 'passing', 'warning', 'critical'"},
		{"bad duration", `{"Name":"web","Address":"10.0.0.5","Port":80,"Check":{"TTL":"ten"}}`, 400, "Request decode failed"},
		{"http body", `{"Name":"web","Address":"10.0.0.5","Port":80,"Check":{"HTTP":"http://10.0.0.5/","Interval":"10s","Body":"x"}}`, 400, "send no Body"},
		{"connect", `{"Name":"web","Address":"10.0.0.5","Port":80,"Connect":{"Native":true}}`, 400, "Connect is not supported"},
		{"kind", `{"Name":"web","Address":"10.0.0.5","Port":80,"Kind":"connect-proxy"}`, 400, `Kind "connect-proxy" is not supported`},
		{"port zero", `{"Name":"web","Address":"10.0.0.5"}`, 400, "port 0 is outside 1..65535"},
		{"namespace", `{"Name":"web","Address":"10.0.0.5","Port":80,"Namespace":"team"}`, 400, "Namespaces are a Consul Enterprise feature"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, http.MethodPut, b.url+"/v1/agent/service/register", tc.body)
			require.Equal(t, tc.status, a.status, a.raw)
			if tc.errHas != "" {
				assert.Contains(t, a.err, tc.errHas)
			} else {
				assert.Empty(t, a.raw, "Consul answers a write with an empty body")
			}
		})
	}

	// An address left out is the caller's, as a local agent's would be.
	a := do(t, http.MethodPut, b.url+"/v1/agent/service/register", `{"Name":"local","ID":"local-1","Port":80}`)
	require.Equal(t, http.StatusOK, a.status, a.raw)
	a = do(t, http.MethodGet, b.url+"/v1/catalog/service/local", "")
	assert.Contains(t, a.raw, `"ServiceAddress":"127.0.0.1"`)
	// The TTL check with "status":"passing" started passing.
	a = do(t, http.MethodGet, b.url+"/v1/health/checks/web", "")
	assert.Contains(t, a.raw, `"CheckID":"service:w2","Name":"Service 'web' check","Status":"passing"`)
}

// The query parameters every read takes, in Consul's formats and with its
// errors.
func TestReadParameters(t *testing.T) {
	b := newBinder(t, nil)
	tests := []struct {
		query       string
		status      int
		errHas      string
		consistency string
	}{
		{"", 200, "", "leader"},
		{"?stale", 200, "", "stale"},
		{"?stale=false", 200, "", "stale"},
		{"?consistent", 200, "", "consistent"},
		{"?stale&consistent", 400, "Cannot specify ?stale with ?consistent, conflicting semantics.", ""},
		{"?index=1&wait=10ms", 200, "", "leader"},
		{"?wait=120000ms", 200, "", "leader"},
		{"?wait=5m", 200, "", "leader"},
		{"?wait=ten", 400, "Invalid wait time", ""},
		{"?wait=5", 400, "Invalid wait time", ""},
		{"?index=x", 400, "Invalid index", ""},
		{"?index=-1", 400, "Invalid index", ""},
		{"?dc=dc1", 200, "", "leader"},
		{"?dc=dc2", 500, "No path to datacenter", ""},
		{"?ns=team", 400, `Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature`, ""},
		{"?partition=default", 200, "", "leader"},
		{"?partition=p1", 400, "Partitions are a Consul Enterprise feature", ""},
		{"?filter=Service.Tags+contains+%22v1%22", 400, "?filter expressions are not supported", ""},
		{"?passing=maybe", 400, "Invalid value for ?passing", ""},
	}
	for _, tc := range tests {
		a := do(t, http.MethodGet, b.url+"/v1/health/service/web"+tc.query, "")
		require.Equal(t, tc.status, a.status, "%s: %s", tc.query, a.raw)
		if tc.errHas != "" {
			assert.Contains(t, a.err, tc.errHas, tc.query)
		} else {
			assert.Equal(t, tc.consistency, a.header.Get("X-Consul-Effective-Consistency"), tc.query)
		}
	}
	a := do(t, http.MethodGet, b.url+"/v1/health/service/Web", "")
	require.Equal(t, http.StatusBadRequest, a.status)
	assert.Contains(t, a.err, "lieur service names are DNS labels")
	a = do(t, http.MethodGet, b.url+"/v1/health/service/", "")
	require.Equal(t, http.StatusBadRequest, a.status)
	assert.Equal(t, "Missing service name", a.err)
}

// The agent routes by Owns: Consul's paths here, lieur's to its own API.
func TestOwnsSplitsConsulPathsFromLieurs(t *testing.T) {
	for path, consulPath := range map[string]bool{
		"/v1/agent/services":           true,
		"/v1/agent/service/register":   true,
		"/v1/catalog/services":         true,
		"/v1/health/service/web":       true,
		"/v1/status/leader":            true,
		"/v1/kv/x":                     true,
		"/v1/kv":                       true,
		"/v1/session/create":           true,
		"/v1/acl/tokens":               true,
		"/v1/query":                    true,
		"/v1/internal/ui/services":     true,
		"/v1/status":                   false, // lieur's node status
		"/v1/services":                 false,
		"/v1/services/web":             false,
		"/v1/lookup/web":               false,
		"/v1/cluster":                  false,
		"/v1/reports":                  false,
		"/v1/internal/apply":           false, // binder to binder
		"/v1/internal/check/service:x": false,
		"/healthz":                     false,
		"/metrics":                     false,
		"/v1/":                         false,
		"/v2/agent/services":           false,
	} {
		assert.Equal(t, consulPath, consul.Owns(path), path)
	}
}

func TestValidateDatacenter(t *testing.T) {
	for dc, ok := range map[string]bool{"dc1": true, "eu-west_2": true, "": false, "DC1": false, "dc 1": false, strings.Repeat("a", 65): false} {
		assert.Equal(t, ok, consul.ValidateDatacenter(dc) == nil, dc)
	}
}

// PUT bodies are taken whatever their Content-Type (python-consul sends
// none), which is safe because browsers preflight a PUT and preflights
// are refused without --allow-origin; a POST that is not JSON is refused.
func TestBrowsersCannotWriteCrossOrigin(t *testing.T) {
	b := newBinder(t, nil)
	req, err := http.NewRequest(http.MethodOptions, b.url+"/v1/agent/service/register", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Access-Control-Request-Method", "PUT")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))

	resp, err = http.Post(b.url+"/v1/agent/service/register", "text/plain", strings.NewReader(`{"Name":"web","Address":"10.0.0.5","Port":80}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
	a := do(t, http.MethodGet, b.url+"/v1/catalog/services", "")
	assert.Equal(t, "{}", strings.TrimSpace(a.raw), "nothing was registered")
}
