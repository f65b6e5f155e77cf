package integration

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	tokCluster  = "cluster-secret-0123456789"
	tokAdmin    = "admin-secret-0123456789"
	tokEcho     = "echo-register-0123456789"
	tokRegister = "any-register-0123456789"
	tokRead     = "read-only-0123456789"
)

func authedCall(t *testing.T, method, url, token, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader([]byte(body)))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpc.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// With --token-file every write needs a token whose role allows it, a
// register token can be bound to types, reads stay open, forwarding between
// binders carries the cluster's own credential, and no token is logged.
func TestTokens(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(file, []byte(strings.Join([]string{
		"# lieur tokens",
		tokCluster + " cluster",
		tokAdmin + " admin",
		tokEcho + " register:echo",
		tokRegister + " register",
		tokRead + " read",
	}, "\n")+"\n"), 0o600))
	c := startCluster(t, 3, "--token-file", file)
	leader := c.leader()
	follower := c.nodes[(leader+1)%3].url()
	reg := func(typ string) string {
		return `{"type":"` + typ + `","address":"127.0.0.1","port":4000}`
	}
	for _, tc := range []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"register without a token", "POST", "/v1/services", "", reg("echo"), 401},
		{"register with an unknown token", "POST", "/v1/services", "not-a-token-at-all", reg("echo"), 401},
		{"register with a read token", "POST", "/v1/services", tokRead, reg("echo"), 403},
		{"register another type with an echo-bound token", "POST", "/v1/services", tokEcho, reg("time"), 403},
		{"register echo with the echo-bound token, through a follower", "POST", "/v1/services", tokEcho, reg("echo"), 200},
		{"register any type with a register token", "POST", "/v1/services", tokRegister, reg("time"), 200},
		{"heartbeat without a token", "PUT", "/v1/services/echo-127.0.0.1-4000/heartbeat", "", "", 401},
		{"lookup without a token: reads are open", "GET", "/v1/lookup/echo", "", "", 200},
		{"report without a token", "POST", "/v1/reports", "", `{"id":"echo-127.0.0.1-4000"}`, 401},
		{"report with a read token", "POST", "/v1/reports", tokRead, `{"id":"echo-127.0.0.1-4000"}`, 200},
		{"deregister time with the echo-bound token", "DELETE", "/v1/services/time-127.0.0.1-4000", tokEcho, "", 403},
		{"join with a register token", "POST", "/v1/cluster/join", tokRegister, `{"id":"n9","raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}`, 403},
		{"internal apply with an admin token", "POST", "/v1/internal/apply", tokAdmin, `{"command":{}}`, 403},
		{"internal apply without a token", "POST", "/v1/internal/apply", "", `{"command":{}}`, 401},
		{"deregister time with an admin token", "DELETE", "/v1/services/time-127.0.0.1-4000", tokAdmin, "", 200},
	} {
		assert.Equal(t, tc.want, authedCall(t, tc.method, follower+tc.path, tc.token, tc.body), tc.name)
	}
	c.waitConverged()

	// The CLI takes --token (and $LIEUR_TOKEN).
	res := runBinary(t, nil, lieurBin, "register", "--binders", strings.Join(c.binders(), ","), "--type", "echo", "--address", "127.0.0.1", "--port", "4001", "--token", tokEcho)
	assert.Equal(t, 0, res.code, res.stderr)
	res = runBinary(t, nil, lieurBin, "register", "--binders", strings.Join(c.binders(), ","), "--type", "echo", "--address", "127.0.0.1", "--port", "4002")
	assert.NotEqual(t, 0, res.code)
	assert.Contains(t, res.stderr, "401")

	for i := range c.nodes {
		log := c.logOf(i)
		for _, secret := range []string{tokCluster, tokAdmin, tokEcho, tokRegister, tokRead} {
			assert.NotContains(t, log, secret, "%s logged a token", c.nodes[i].id)
		}
	}
}
