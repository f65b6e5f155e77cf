package integration

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/wire"
)

// SIGHUP reloads the token file without a restart: a rotated register token
// and a rotated cluster token take effect on every binder, forwarding
// between binders keeps working through the rotation, and a file that
// does not parse keeps the tokens in force, saying why in the log.
func TestSIGHUPReloadsTokens(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	write := func(lines ...string) {
		// Written whole and renamed, as an operator's tooling would: a
		// binder never reads half a file.
		tmp := file + ".tmp"
		require.NoError(t, os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
		require.NoError(t, os.Rename(tmp, file))
	}
	const oldReg, newReg = "register-before-0123456789", "register-after-0123456789"
	const newCluster = "cluster-after-0123456789"
	write(tokCluster+" cluster", oldReg+" register")
	c := startCluster(t, 3, "--token-file", file)
	hupAll := func() {
		for i := range c.nodes {
			c.sendOnly(i, syscall.SIGHUP)
		}
	}
	port := 4000
	// registers sends a registration to every binder (followers forward
	// it to the leader with the cluster token) and gives their answers.
	registers := func(token string) []int {
		var codes []int
		for _, n := range c.nodes {
			port++
			codes = append(codes, authedCall(t, "POST", n.url()+"/v1/services", token,
				fmt.Sprintf(`{"type":"echo","address":"127.0.0.1","port":%d}`, port)))
		}
		return codes
	}
	require.Equal(t, []int{200, 200, 200}, registers(oldReg))
	require.Equal(t, []int{401, 401, 401}, registers(newReg))

	// Step 1 of a cluster-token rotation, and a new register token: the
	// new cluster token is sent, the old one still accepted.
	write(newCluster+" cluster", tokCluster+" cluster", newReg+" register")
	hupAll()
	awaitReloads := func(n int) {
		for i := range c.nodes {
			waitFor(t, 30*time.Second, "node to log its reload", func() (bool, string) {
				log := c.logSinceStart(i)
				return strings.Count(log, "reload: tokens reloaded") >= n, tail(log, 5)
			})
		}
	}
	awaitReloads(1)
	require.Equal(t, []int{200, 200, 200}, registers(newReg))
	require.Equal(t, []int{401, 401, 401}, registers(oldReg), "a token gone from the file is refused")
	// Step 2: only the new cluster token. Registrations at followers are
	// forwarded to the leader with it, and the old one is refused.
	write(newCluster+" cluster", newReg+" register")
	hupAll()
	awaitReloads(2)
	require.Equal(t, []int{200, 200, 200}, registers(newReg), "forwarded with the rotated cluster token")
	leader := c.nodes[c.leader()].url()
	require.Equal(t, 401, authedCall(t, "POST", leader+"/v1/internal/apply", tokCluster, `{}`),
		"the old cluster token no longer opens the internal endpoints")
	waitFor(t, 30*time.Second, "every registration on every binder", func() (bool, string) {
		for i := range c.nodes {
			if got := len(c.servicesAt(i)); got != 9 {
				return false, fmt.Sprintf("%s holds %d", c.nodes[i].id, got)
			}
		}
		return true, ""
	})

	// A file that does not parse: every binder keeps its tokens and says so.
	write(newCluster+" cluster", newReg+" superuser")
	hupAll()
	for i := range c.nodes {
		waitFor(t, 30*time.Second, "node to refuse the broken file", func() (bool, string) {
			log := c.logSinceStart(i)
			return strings.Contains(log, "reload: keeping the tokens in force") && strings.Contains(log, "superuser"), tail(log, 5)
		})
	}
	require.Equal(t, []int{200, 200, 200}, registers(newReg))
}

// SIGHUP reloads the TLS files: after certificates (here from a new CA)
// replace the old ones on disk, every binder serves the new certificate,
// clients that trust the new CA get in, and a binder that restarts joins
// the others over Raft's mutual TLS with the new material.
func TestSIGHUPReloadsCertificates(t *testing.T) {
	dir := t.TempDir()
	d := startDev(t, "--nodes", "3", "--tls", "--data-dir", filepath.Join(dir, "dev"))
	waitFor(t, 30*time.Second, "dev to start 3 agents", func() (bool, string) {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.binders) == 3 && len(d.pids) == 3, d.out.String()
	})
	binders := strings.Join(d.binders, ",")
	live := filepath.Join(dir, "dev", "tls")
	waitFor(t, 30*time.Second, "the TLS cluster to serve", func() (bool, string) {
		r := runBinary(t, nil, lieurBin, "status", "--binders", binders, "--ca", filepath.Join(live, "ca.pem"), "--json")
		return r.code == 0 && strings.Count(r.stdout, `"caught_up": true`) == 3, r.stdout + r.stderr
	})

	renewed := filepath.Join(dir, "renewed")
	require.Equal(t, 0, runBinary(t, nil, lieurBin, "tls", "init", renewed).code)
	// The CA file holds both CAs during the change, so that a binder that
	// has reloaded and one that has not yet still trust each other.
	oldCA, err := os.ReadFile(filepath.Join(live, "ca.pem"))
	require.NoError(t, err)
	newCA, err := os.ReadFile(filepath.Join(renewed, "ca.pem"))
	require.NoError(t, err)
	replace := func(name string, data []byte) {
		tmp := filepath.Join(live, name+".tmp")
		require.NoError(t, os.WriteFile(tmp, data, 0o600))
		require.NoError(t, os.Rename(tmp, filepath.Join(live, name)))
	}
	for _, name := range []string{"node.pem", "node-key.pem"} {
		data, err := os.ReadFile(filepath.Join(renewed, name))
		require.NoError(t, err)
		replace(name, data)
	}
	replace("ca.pem", append(append([]byte{}, oldCA...), newCA...))
	wantSerial := serialOf(t, filepath.Join(renewed, "node.pem"))
	for _, id := range []string{"n1", "n2", "n3"} {
		require.NoError(t, syscall.Kill(d.latestPid(id), syscall.SIGHUP))
	}
	onlyNew := x509.NewCertPool()
	require.True(t, onlyNew.AppendCertsFromPEM(newCA))
	for _, b := range d.binders {
		addr := strings.TrimPrefix(b, "https://")
		waitFor(t, 30*time.Second, addr+" to serve the renewed certificate", func() (bool, string) {
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: onlyNew, ServerName: "127.0.0.1"})
			if err != nil {
				return false, err.Error()
			}
			defer conn.Close()
			got := conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
			return got == wantSerial, got
		})
	}

	newCAFile := filepath.Join(renewed, "ca.pem")
	r := runBinary(t, nil, lieurBin, "register", "--binders", binders, "--ca", newCAFile, "--type", "echo", "--address", "127.0.0.1", "--port", "5000")
	require.Equal(t, 0, r.code, r.stderr)
	// A restarted binder makes new Raft connections, with the new files.
	old := d.latestPid("n2")
	require.NoError(t, syscall.Kill(old, syscall.SIGKILL))
	waitFor(t, 30*time.Second, "dev to restart n2", func() (bool, string) {
		p := d.latestPid("n2")
		return p != 0 && p != old, ""
	})
	r = runBinary(t, nil, lieurBin, "register", "--binders", binders, "--ca", newCAFile, "--type", "echo", "--address", "127.0.0.1", "--port", "5001")
	require.Equal(t, 0, r.code, r.stderr)
	waitFor(t, 60*time.Second, "the restarted binder to catch up over mutual TLS", func() (bool, string) {
		r := runBinary(t, nil, lieurBin, "status", "--binders", binders, "--ca", newCAFile, "--json")
		return r.code == 0 && strings.Count(r.stdout, `"caught_up": true`) == 3 &&
			strings.Count(r.stdout, `"table_hash"`) == 3 && sameHashes(r.stdout), r.stdout + r.stderr
	})
}

func serialOf(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	block, _ := pem.Decode(data)
	require.NotNil(t, block)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return cert.SerialNumber.String()
}

// sameHashes reports whether every binder in `lieur status --json` output
// holds the same table.
func sameHashes(out string) bool {
	var rows []struct {
		Status *wire.Status `json:"status"`
	}
	if json.Unmarshal([]byte(out), &rows) != nil || len(rows) == 0 {
		return false
	}
	for _, r := range rows {
		if r.Status == nil || r.Status.TableHash != rows[0].Status.TableHash {
			return false
		}
	}
	return true
}
