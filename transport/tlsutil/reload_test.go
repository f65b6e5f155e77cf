package tlsutil

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// handshake runs one mutual-TLS handshake over a real TCP connection and
// returns the server certificate's serial the client saw.
func handshake(t *testing.T, server, client *tls.Config) (string, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		done <- tls.Server(c, server).Handshake()
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	cfg := client.Clone()
	cfg.ServerName = "127.0.0.1"
	c := tls.Client(raw, cfg)
	defer c.Close()
	cerr := c.Handshake()
	serr := <-done
	if cerr != nil {
		return "", cerr
	}
	if serr != nil {
		return "", serr
	}
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

func copyFiles(t *testing.T, from string, to Files) {
	t.Helper()
	for src, dst := range map[string]string{"node.pem": to.Cert, "node-key.pem": to.Key, "ca.pem": to.CA} {
		data, err := os.ReadFile(filepath.Join(from, src))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(dst, data, 0o600))
	}
}

// Renewed certificates, even from a new CA, take effect on Reload for
// every later connection, on both sides; files that do not load keep the
// old ones.
func TestReloadTakesNewCertificatesAndKeepsTheOldOnError(t *testing.T) {
	dir := t.TempDir()
	oldCA, newCA := filepath.Join(dir, "old"), filepath.Join(dir, "new")
	require.NoError(t, InitDev(oldCA))
	require.NoError(t, InitDev(newCA))
	live := func(name string) Files {
		d := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(d, 0o700))
		f := Files{Cert: filepath.Join(d, "node.pem"), Key: filepath.Join(d, "node-key.pem"), CA: filepath.Join(d, "ca.pem")}
		copyFiles(t, oldCA, f)
		return f
	}
	srvFiles, cliFiles := live("server"), live("client")
	srv, err := Load(srvFiles)
	require.NoError(t, err)
	cli, err := Load(cliFiles)
	require.NoError(t, err)
	before, err := handshake(t, srv.RaftServer, cli.RaftClient)
	require.NoError(t, err)

	// The server moves to the new CA; a client still on the old one is
	// refused, as it should be.
	copyFiles(t, newCA, srvFiles)
	require.NoError(t, srv.Reload())
	_, err = handshake(t, srv.RaftServer, cli.RaftClient)
	require.Error(t, err, "a client that trusts only the old CA must not accept the new certificate")

	copyFiles(t, newCA, cliFiles)
	require.NoError(t, cli.Reload())
	after, err := handshake(t, srv.RaftServer, cli.RaftClient)
	require.NoError(t, err)
	assert.NotEqual(t, before, after, "the renewed certificate is served")
	assert.Equal(t, after, srv.Certificate().SerialNumber.String())
	_, err = handshake(t, srv.HTTPServer, cli.Client)
	require.NoError(t, err, "the HTTP side too")

	// A key that does not match, a CA that does not sign the certificate,
	// a file gone: refused, the pair in force stays.
	require.NoError(t, os.WriteFile(srvFiles.Key, []byte("not a key"), 0o600))
	assert.Error(t, srv.Reload())
	copyFiles(t, newCA, srvFiles)
	data, err := os.ReadFile(filepath.Join(oldCA, "ca.pem"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(srvFiles.CA, data, 0o600))
	assert.ErrorContains(t, srv.Reload(), "not signed by the CA")
	require.NoError(t, os.Remove(srvFiles.Cert))
	assert.Error(t, srv.Reload())
	still, err := handshake(t, srv.RaftServer, cli.RaftClient)
	require.NoError(t, err)
	assert.Equal(t, after, still)
}
