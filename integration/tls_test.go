package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/wire"
)

// A TLS cluster (`lieur dev --tls`, certificates from `lieur tls init`):
// clients that trust the CA work, those that do not are refused, and a
// node whose certificate comes from another CA cannot join.
func TestTLSCluster(t *testing.T) {
	dir := t.TempDir()
	d := startDev(t, "--nodes", "3", "--tls", "--data-dir", filepath.Join(dir, "dev"))
	waitFor(t, 30*time.Second, "dev to start 3 agents", func() (bool, string) {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.binders) == 3 && len(d.pids) == 3, d.out.String()
	})
	binders := strings.Join(d.binders, ",")
	require.True(t, strings.HasPrefix(binders, "https://"))
	ca := filepath.Join(dir, "dev", "tls", "ca.pem")

	waitFor(t, 30*time.Second, "the TLS cluster to serve", func() (bool, string) {
		r := runBinary(t, nil, lieurBin, "status", "--binders", binders, "--ca", ca, "--json")
		return r.code == 0 && strings.Count(r.stdout, `"caught_up": true`) == 3, r.stdout + r.stderr
	})
	r := runBinary(t, nil, lieurBin, "register", "--binders", binders, "--ca", ca, "--type", "echo", "--address", "127.0.0.1", "--port", "5000")
	require.Equal(t, 0, r.code, r.stderr)
	r = runBinary(t, nil, lieurBin, "lookup", "echo", "--binders", binders, "--ca", ca, "--json")
	require.Equal(t, 0, r.code, r.stderr)

	r = runBinary(t, nil, lieurBin, "lookup", "echo", "--binders", binders)
	assert.NotEqual(t, 0, r.code, "a client that does not trust the CA is refused")
	assert.Contains(t, r.stderr, "certificate")
	plain := strings.ReplaceAll(d.binders[0], "https://", "http://")
	code, _ := getJSON(plain+"/v1/status", nil)
	assert.NotEqual(t, 200, code, "plain HTTP is not served")

	// A node with a certificate from another CA asks to join.
	evil := filepath.Join(dir, "evil")
	require.Equal(t, 0, runBinary(t, nil, lieurBin, "tls", "init", evil).code)
	ports := freePorts(t, 2)
	logPath := filepath.Join(dir, "rogue.log")
	logf, err := os.Create(logPath)
	require.NoError(t, err)
	rogue := exec.Command(lieurBin, "agent", "--id", "n9", "--raft-addr", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", ports[1]), "--data-dir", filepath.Join(dir, "n9"), "--join", d.binders[0],
		"--tls-cert", filepath.Join(evil, "node.pem"), "--tls-key", filepath.Join(evil, "node-key.pem"), "--tls-ca", filepath.Join(evil, "ca.pem"))
	rogue.Stdout, rogue.Stderr = logf, logf
	require.NoError(t, rogue.Start())
	t.Cleanup(func() { _ = rogue.Process.Kill(); _ = rogue.Wait(); logf.Close() })
	waitFor(t, 30*time.Second, "the rogue node's join to fail", func() (bool, string) {
		data, _ := os.ReadFile(logPath)
		return strings.Contains(string(data), "join failed") && strings.Contains(string(data), "certificate"), string(data)
	})
	r = runBinary(t, nil, lieurBin, "members", "--binders", binders, "--ca", ca, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var cl wire.ClusterResponse
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &cl))
	assert.Len(t, cl.Members, 3, "the rogue node is not a member")
	for _, m := range cl.Members {
		assert.NotEqual(t, "n9", m.ID)
	}
}
