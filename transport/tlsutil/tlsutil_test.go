package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestInitDevAndLoad(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, InitDev(dir, "binder1.example", "10.0.0.7"))
	files := Files{Cert: filepath.Join(dir, "node.pem"), Key: filepath.Join(dir, "node-key.pem"), CA: filepath.Join(dir, "ca.pem")}
	cfgs, err := Load(files)
	require.NoError(t, err)
	assert.Equal(t, uint16(tls.VersionTLS13), cfgs.HTTPServer.MinVersion, "TLS 1.3 only")
	assert.Equal(t, tls.RequireAndVerifyClientCert, cfgs.RaftServer.ClientAuth, "Raft is mutual TLS")

	data, err := os.ReadFile(files.Cert)
	require.NoError(t, err)
	block, _ := pem.Decode(data)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	pool, err := LoadCA(files.CA)
	require.NoError(t, err)
	for _, host := range []string{"127.0.0.1", "localhost", "binder1.example", "10.0.0.7"} {
		_, err := cert.Verify(x509.VerifyOptions{DNSName: host, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		assert.NoError(t, err, host)
	}
	_, err = cert.Verify(x509.VerifyOptions{DNSName: "elsewhere.example", Roots: pool})
	assert.Error(t, err)
	info, err := os.Stat(filepath.Join(dir, "node-key.pem"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "keys are private")

	c, err := ClientConfig(files.CA, filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem"))
	require.NoError(t, err)
	assert.Len(t, c.Certificates, 1)
}

func TestFilesValidate(t *testing.T) {
	assert.NoError(t, Files{}.Validate())
	assert.NoError(t, Files{Cert: "c", Key: "k", CA: "a"}.Validate())
	assert.Error(t, Files{Cert: "c"}.Validate())
	_, err := LoadCA(filepath.Join(t.TempDir(), "missing.pem"))
	assert.Error(t, err)
}
