package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAgentConfigValidate(t *testing.T) {
	base := func() AgentConfig {
		return AgentConfig{ID: "n1", RaftAddr: "127.0.0.1:7001", HTTPAddr: "127.0.0.1:8001", DataDir: "/tmp/x"}
	}
	tests := []struct {
		name    string
		mutate  func(*AgentConfig)
		wantErr string
	}{
		{"peers", func(c *AgentConfig) { c.Peers = "n1=127.0.0.1:7001,n2=127.0.0.1:7002" }, ""},
		{"join", func(c *AgentConfig) { c.Join = "http://127.0.0.1:8002" }, ""},
		{"neither peers nor join", func(c *AgentConfig) {}, "exactly one"},
		{"both", func(c *AgentConfig) { c.Peers = "n1=127.0.0.1:7001"; c.Join = "http://x:1" }, "exactly one"},
		{"peer without id", func(c *AgentConfig) { c.Peers = "=127.0.0.1:7001" }, "not id=host:port"},
		{"peer without port", func(c *AgentConfig) { c.Peers = "n1=127.0.0.1" }, "missing port"},
		{"no id", func(c *AgentConfig) { c.ID = ""; c.Peers = "n1=127.0.0.1:7001" }, "required"},
		{"bad log level", func(c *AgentConfig) { c.Peers = "n1=127.0.0.1:7001"; c.LogLevel = "loud" }, "log-level"},
		{"id with a space", func(c *AgentConfig) { c.ID = "node 1"; c.Peers = "node 1=127.0.0.1:7001" }, "--id"},
		{"allowed origins", func(c *AgentConfig) {
			c.Peers = "n1=127.0.0.1:7001"
			c.AllowOrigins = []string{"https://ui.example:8443", "http://localhost:3000", "*"}
		}, ""},
		{"origin with a path", func(c *AgentConfig) {
			c.Peers = "n1=127.0.0.1:7001"
			c.AllowOrigins = []string{"https://ui.example/app"}
		}, "--allow-origin"},
		{"origin without scheme", func(c *AgentConfig) { c.Peers = "n1=127.0.0.1:7001"; c.AllowOrigins = []string{"ui.example"} }, "--allow-origin"},
		{"dns", func(c *AgentConfig) {
			c.Peers = "n1=127.0.0.1:7001"
			c.DNSAddr = "127.0.0.1:8600"
			c.DNSDomain = "Corp.Example"
		}, ""},
		{"dns without port", func(c *AgentConfig) { c.Peers = "n1=127.0.0.1:7001"; c.DNSAddr = "127.0.0.1" }, "--dns-addr"},
		{"dns fractional ttl", func(c *AgentConfig) { c.Peers = "n1=127.0.0.1:7001"; c.DNSTTL = 1500 * time.Millisecond }, "ttl"},
		{"dns bad domain", func(c *AgentConfig) { c.Peers = "n1=127.0.0.1:7001"; c.DNSDomain = "a_b." }, "domain"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				assert.Equal(t, "n1", c.Node.ID)
				assert.Equal(t, "info", c.LogLevel)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

// TestAgentConfigRefusesBadPeers: --peers that Raft could not bootstrap
// are refused by Validate, before any port is bound, in the flag's terms.
func TestAgentConfigRefusesBadPeers(t *testing.T) {
	tests := []struct {
		name    string
		peers   string
		wantErr string
	}{
		{"duplicate id", "n1=127.0.0.1:7001,n2=127.0.0.1:7002,n1=127.0.0.1:7003", `--peers: id "n1" listed twice`},
		{"duplicate raft address", "n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7002", `--peers: "n2" and "n3" share raft address 127.0.0.1:7002`},
		{"self missing", "n2=127.0.0.1:7002,n3=127.0.0.1:7003", "--peers: this node (--id n1) is not among them"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := AgentConfig{ID: "n1", RaftAddr: "127.0.0.1:7001", HTTPAddr: "127.0.0.1:8001", DataDir: "/tmp/x", Peers: tc.peers}
			require.EqualError(t, c.Validate(), tc.wantErr)
		})
	}
}

func TestParsePeers(t *testing.T) {
	peers, err := parsePeers("n1=127.0.0.1:7001, n2=127.0.0.1:7002")
	require.NoError(t, err)
	require.Len(t, peers, 2)
	assert.Equal(t, "n2", peers[1].ID)
	assert.Equal(t, "127.0.0.1:7002", peers[1].RaftAddr)
}
