package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// --nonvoter and --cleanup-dead-after mistakes end the agent before any
// port is bound, in the flags' terms.
func TestAgentOperatorFlags(t *testing.T) {
	base := AgentConfig{ID: "n4", RaftAddr: "127.0.0.1:7004", HTTPAddr: "127.0.0.1:8004", DataDir: "/tmp/x"}
	for _, tc := range []struct {
		name    string
		mutate  func(*AgentConfig)
		wantErr string
	}{
		{"replica", func(c *AgentConfig) { c.Join = "http://127.0.0.1:8001"; c.Node.Nonvoter = true }, ""},
		{"replica with peers", func(c *AgentConfig) { c.Peers = "n4=127.0.0.1:7004"; c.Node.Nonvoter = true }, "--nonvoter needs --join"},
		{"cleanup", func(c *AgentConfig) { c.Join = "http://127.0.0.1:8001"; c.Node.CleanupDeadAfter = 3 * time.Second }, ""},
		{"cleanup too short", func(c *AgentConfig) {
			c.Join = "http://127.0.0.1:8001"
			c.Node.CleanupDeadAfter = 500 * time.Millisecond
		}, "--cleanup-dead-after 500ms: want 0 (off) or at least 1s"},
		{"cleanup negative", func(c *AgentConfig) { c.Join = "http://127.0.0.1:8001"; c.Node.CleanupDeadAfter = -time.Second }, "--cleanup-dead-after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mutate(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

// The agent has the flags another test (and docs/operations.md) names.
func TestAgentHasOperatorFlags(t *testing.T) {
	cmd := newAgentCmd()
	require.NoError(t, cmd.ParseFlags([]string{"--nonvoter", "--cleanup-dead-after", "3s"}))
	v, err := cmd.Flags().GetBool("nonvoter")
	require.NoError(t, err)
	assert.True(t, v)
	d, err := cmd.Flags().GetDuration("cleanup-dead-after")
	require.NoError(t, err)
	assert.Equal(t, 3*time.Second, d)
}

// Operator commands check their arguments before calling anyone.
func TestOperatorCommandArguments(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"operator", "promote"}, "accepts 1 arg"},
		{[]string{"operator", "demote", "a", "b"}, "accepts 1 arg"},
		{[]string{"operator", "remove"}, "accepts 1 arg"},
		{[]string{"operator", "transfer-leader", "--to=", "--binders", "http://127.0.0.1:1"}, "--to needs a server id"},
		{[]string{"operator", "raft", "list-peers", "--binders", ""}, "no binders"},
	} {
		root := newRootCmd()
		root.SetArgs(tc.args)
		root.SetOut(&bytes.Buffer{})
		root.SetErr(&bytes.Buffer{})
		err := root.Execute()
		require.Error(t, err, "%q", tc.args)
		assert.Contains(t, err.Error(), tc.wantErr, "%q", tc.args)
	}
}
