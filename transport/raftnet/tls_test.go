package raftnet

import (
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/tlsutil"
)

func tlsLayer(t *testing.T, dir string) *TCPStreamLayer {
	t.Helper()
	cfgs, err := tlsutil.Load(tlsutil.Files{Cert: filepath.Join(dir, "node.pem"), Key: filepath.Join(dir, "node-key.pem"), CA: filepath.Join(dir, "ca.pem")})
	require.NoError(t, err)
	l, err := Listen("127.0.0.1:0", "")
	require.NoError(t, err)
	l.UseTLS(cfgs.RaftServer, cfgs.RaftClient)
	t.Cleanup(func() { l.Close() })
	return l
}

// Raft traffic is mutual TLS: nodes of one CA talk; a node with a
// certificate from another CA is refused both ways.
func TestMutualTLS(t *testing.T) {
	good, evil := t.TempDir(), t.TempDir()
	require.NoError(t, tlsutil.InitDev(good))
	require.NoError(t, tlsutil.InitDev(evil))
	a, b, rogue := tlsLayer(t, good), tlsLayer(t, good), tlsLayer(t, evil)

	echoOnce := func(l *TCPStreamLayer) {
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			buf := make([]byte, 4)
			if _, err := io.ReadFull(c, buf); err == nil {
				_, _ = c.Write(buf)
			}
		}()
	}
	echoOnce(b)
	c, err := a.Dial(raft.ServerAddress(b.Addr().String()), 2*time.Second)
	require.NoError(t, err)
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf))
	c.Close()

	_, err = rogue.Dial(raft.ServerAddress(b.Addr().String()), 2*time.Second)
	assert.Error(t, err, "a node of another CA cannot reach a member")
	echoOnce(rogue)
	_, err = a.Dial(raft.ServerAddress(rogue.Addr().String()), 2*time.Second)
	assert.Error(t, err, "a member does not talk to a node of another CA")
}
