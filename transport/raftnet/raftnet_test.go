package raftnet

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestListenRejectsUndialableAdvertise(t *testing.T) {
	for _, tc := range []struct{ bind, advertise string }{
		{"0.0.0.0:0", ""},
		{"127.0.0.1:0", "0.0.0.0:7000"},
		{"127.0.0.1:0", "127.0.0.1:0"},
	} {
		_, err := Listen(tc.bind, tc.advertise)
		assert.True(t, errors.Is(err, ErrBadAdvertise), "bind %s advertise %q: %v", tc.bind, tc.advertise, err)
	}
	_, err := Listen("127.0.0.1:0", "not an address")
	assert.Error(t, err)
}

// Closing the layer closes the connections it accepted, so the peer's
// reads end instead of waiting forever.
func TestCloseEndsAcceptedConnections(t *testing.T) {
	l, err := Listen("127.0.0.1:0", "")
	require.NoError(t, err)
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, err = c.Read(make([]byte, 1))
		}
		accepted <- err
	}()
	out, err := l.Dial(raft.ServerAddress(l.Addr().String()), time.Second)
	require.NoError(t, err)
	defer out.Close()
	_, err = out.Write([]byte{1})
	require.NoError(t, err)
	require.NoError(t, <-accepted)

	require.NoError(t, l.Close())
	_ = out.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = out.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "the dialer sees the connection closed")
	_, err = l.Accept()
	assert.Error(t, err)
}

// A peer that refuses connections is dialled again until it listens, so a
// restarted node is reached within moments of its return.
func TestDialWaitsForRestartingPeer(t *testing.T) {
	l, err := Listen("127.0.0.1:0", "")
	require.NoError(t, err)
	defer l.Close()
	peer, err := Listen("127.0.0.1:0", "")
	require.NoError(t, err)
	addr := peer.Addr().String()
	require.NoError(t, peer.Close()) // the peer is down: connections are refused

	dialed := make(chan error, 1)
	go func() {
		c, err := l.Dial(raft.ServerAddress(addr), time.Second)
		if err == nil {
			c.Close()
		}
		dialed <- err
	}()
	select {
	case err := <-dialed:
		t.Fatalf("dial to a down peer returned at once: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	back, err := Listen(addr, "")
	require.NoError(t, err)
	defer back.Close()
	go func() {
		if c, err := back.Accept(); err == nil {
			c.Close()
		}
	}()
	require.NoError(t, <-dialed, "the dial connects once the peer listens again")
}

// Close ends a patient dial at once.
func TestCloseEndsPatientDial(t *testing.T) {
	l, err := Listen("127.0.0.1:0", "")
	require.NoError(t, err)
	down, err := Listen("127.0.0.1:0", "")
	require.NoError(t, err)
	addr := down.Addr().String()
	require.NoError(t, down.Close())
	dialed := make(chan error, 1)
	go func() {
		_, err := l.Dial(raft.ServerAddress(addr), time.Second)
		dialed <- err
	}()
	require.NoError(t, l.Close())
	assert.Error(t, <-dialed)
}
