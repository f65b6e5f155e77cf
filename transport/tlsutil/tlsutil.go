// Package tlsutil builds lieur's TLS configurations from PEM files, and
// creates a development certificate authority with node and client
// certificates (`lieur tls init`).
package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// Files names a certificate, its key and the CA that signs the cluster's
// certificates.
type Files struct {
	Cert, Key, CA string
}

// Enabled reports whether TLS was asked for.
func (f Files) Enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// Validate checks that all three files are given together.
func (f Files) Validate() error {
	if f.Enabled() && (f.Cert == "" || f.Key == "" || f.CA == "") {
		return errors.New("TLS needs --tls-cert, --tls-key and --tls-ca together")
	}
	return nil
}

// Configs are a node's TLS settings. Their certificate, key and CA are
// read again by Reload; connections made after it use the new files.
type Configs struct {
	// HTTPServer serves the API: TLS 1.3; a client certificate is checked
	// against the CA when one is presented.
	HTTPServer *tls.Config
	// RaftServer and RaftClient carry Raft traffic over mutual TLS: each
	// side must present a certificate signed by the CA.
	RaftServer *tls.Config
	RaftClient *tls.Config
	// Client is for the node's own HTTP calls to other nodes.
	Client *tls.Config

	files   Files
	current atomic.Pointer[material]
}

// material is what one reading of the files gave.
type material struct {
	cert                   *tls.Certificate
	pool                   *x509.CertPool
	httpServer, raftServer *tls.Config // per-handshake configs with the pool
	leaf                   *x509.Certificate
}

// Load reads the files and builds a node's configurations.
func Load(f Files) (*Configs, error) {
	c := &Configs{files: f}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.current.Load().cert, nil }
	getClientCert := func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c.current.Load().cert, nil }
	c.HTTPServer = &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: getCert, ClientAuth: tls.VerifyClientCertIfGiven,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return c.current.Load().httpServer, nil }}
	c.RaftServer = &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: getCert, ClientAuth: tls.RequireAndVerifyClientCert,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return c.current.Load().raftServer, nil }}
	client := func() *tls.Config {
		// The CA may change on Reload, and RootCAs cannot: the chain is
		// verified here against the CA of the moment. InsecureSkipVerify
		// only turns off the built-in check this replaces; no connection
		// is accepted unverified.
		return &tls.Config{MinVersion: tls.VersionTLS13, GetClientCertificate: getClientCert,
			InsecureSkipVerify: true, VerifyConnection: c.verifyServer}
	}
	c.RaftClient, c.Client = client(), client()
	return c, nil
}

// Reload reads the certificate, key and CA files again. On any error the
// configuration in force stays as it was.
func (c *Configs) Reload() error {
	cert, err := tls.LoadX509KeyPair(c.files.Cert, c.files.Key)
	if err != nil {
		return fmt.Errorf("load certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("load certificate: %w", err)
	}
	pool, err := LoadCA(c.files.CA)
	if err != nil {
		return err
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		// A certificate the CA does not vouch for would cut this node off
		// from every other: keep the old pair.
		return fmt.Errorf("certificate %s is not signed by the CA in %s: %w", c.files.Cert, c.files.CA, err)
	}
	server := func(auth tls.ClientAuthType) *tls.Config {
		return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: auth}
	}
	c.current.Store(&material{cert: &cert, pool: pool, leaf: leaf,
		httpServer: server(tls.VerifyClientCertIfGiven), raftServer: server(tls.RequireAndVerifyClientCert)})
	return nil
}

// Certificate is the certificate in force (after the last good Reload).
func (c *Configs) Certificate() *x509.Certificate { return c.current.Load().leaf }

// verifyServer checks the server's chain and name against the CA in
// force, as crypto/tls would against RootCAs.
func (c *Configs) verifyServer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the server sent no certificate")
	}
	opts := x509.VerifyOptions{Roots: c.current.Load().pool, DNSName: cs.ServerName, Intermediates: x509.NewCertPool()}
	for _, ic := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(ic)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
	}
	return nil
}

// LoadCA reads a PEM bundle of CA certificates.
func LoadCA(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("load CA %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// ClientConfig builds a client's configuration: the CA to trust and,
// optionally, a client certificate.
func ClientConfig(ca, cert, key string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13}
	if ca != "" {
		pool, err := LoadCA(ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if cert != "" || key != "" {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg, nil
}

// InitDev writes a development CA (ca.pem, ca-key.pem), a node
// certificate valid for loopback and the given extra host names or IPs
// (node.pem, node-key.pem) and a client certificate (client.pem,
// client-key.pem) into dir. Not for production: one node certificate is
// shared by every node.
func InitDev(dir string, hosts ...string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "lieur development CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	if err := writePair(dir, "ca", caDER, caKey); err != nil {
		return err
	}
	leaf := func(name string, usage []x509.ExtKeyUsage, ips []net.IP, dns []string) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(), Subject: pkix.Name{CommonName: "lieur " + name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage, IPAddresses: ips, DNSNames: dns,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		return writePair(dir, name, der, key)
	}
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	dns := []string{"localhost"}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, h)
		}
	}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if err := leaf("node", both, ips, dns); err != nil {
		return err
	}
	return leaf("client", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func writePair(dir, name string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
}
