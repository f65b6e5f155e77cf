// Package raftnet carries Raft traffic between binders over TCP: a
// raft.StreamLayer and the network transport built on it.
package raftnet

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

var _ raft.StreamLayer = (*TCPStreamLayer)(nil)

// ErrBadAdvertise is returned when the advertised address is not a concrete
// IP:port that other nodes can dial.
var ErrBadAdvertise = errors.New("raft address must be a reachable IP:port")

// TCPStreamLayer listens for and dials Raft connections over plain TCP.
// Connections it accepted are closed with it: raft's NetworkTransport
// leaves them to the peer, whose reads would otherwise pin a goroutine
// each after this node stopped.
type TCPStreamLayer struct {
	advertise net.Addr
	listener  net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	done   chan struct{} // closed by Close: ends patient dials

	serverTLS, clientTLS *tls.Config

	// Patience is how long Dial keeps retrying a peer that refuses
	// connections (its process is down, its host up). See Dial.
	Patience time.Duration
}

// DefaultPatience is the default of TCPStreamLayer.Patience.
const DefaultPatience = 30 * time.Second

// Listen binds bindAddr. advertise is the address other nodes dial; when it
// is empty the bound address is used, which must then not be unspecified
// (0.0.0.0) since peers could not dial it.
func Listen(bindAddr, advertise string) (*TCPStreamLayer, error) {
	ln, err := net.Listen("tcp", bindAddr)
	if err != nil {
		return nil, fmt.Errorf("raft listen %s: %w", bindAddr, err)
	}
	adv := ln.Addr()
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("raft advertise %s: %w", advertise, err)
		}
		adv = a
	}
	if t, ok := adv.(*net.TCPAddr); !ok || t.IP == nil || t.IP.IsUnspecified() || t.Port == 0 {
		ln.Close()
		return nil, fmt.Errorf("%w: %s", ErrBadAdvertise, adv)
	}
	return &TCPStreamLayer{advertise: adv, listener: ln, conns: map[net.Conn]struct{}{}, done: make(chan struct{}), Patience: DefaultPatience}, nil
}

// UseTLS makes the layer speak mutual TLS: accepted connections present
// server's certificate and must present one the CA signed; dialled ones
// present client's. Call it before the layer is used.
func (t *TCPStreamLayer) UseTLS(server, client *tls.Config) {
	t.serverTLS, t.clientTLS = server, client
}

// Dial opens a connection to another node's Raft address. A peer that
// refuses connections (a restarting process) is dialled again every 50 ms
// for up to Patience, instead of failing at once: hashicorp/raft backs off
// exponentially (up to 10 s) after each failed append to a follower, so
// fast failures while a node is down would leave the restarted node
// waiting seconds for its first append. A patient dial fails rarely and
// connects within 50 ms of the peer's return.
//
// A peer that does not answer at all (its link is down, its SYNs are
// lost) is dialled in attempts of at most dialAttempt, each with a fresh
// SYN, until timeout: one long attempt would wait for the kernel's SYN
// retransmissions (1, 3, 7 s after the first), so a node whose link came
// back would be reached seconds later; short attempts reach it within
// dialAttempt.
func (t *TCPStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	start := time.Now()
	patience := start.Add(t.Patience)
	giveUp := start.Add(timeout)
	for {
		attempt := min(dialAttempt, time.Until(giveUp))
		if attempt <= 0 {
			attempt = time.Millisecond // one last try when timeout is tiny
		}
		c, err := dialOnce(string(address), attempt)
		if err == nil {
			if t.clientTLS != nil {
				return t.handshake(c, string(address), timeout)
			}
			return c, nil
		}
		var wait time.Duration
		switch {
		case errors.Is(err, syscall.ECONNREFUSED) && time.Now().Before(patience):
			wait = 50 * time.Millisecond
		case isTimeout(err) && time.Now().Before(giveUp):
			wait = 0
		default:
			return nil, err
		}
		select {
		case <-t.done:
			return nil, err
		case <-time.After(wait):
		}
	}
}

// dialAttempt bounds one connection attempt of Dial.
const dialAttempt = 500 * time.Millisecond

// userTimeout is how long data sent on a Raft connection may stay
// unacknowledged before the kernel drops the connection (TCP_USER_TIMEOUT).
// Without it, a connection whose peer's link went down keeps
// retransmitting with a doubling interval, so after the link is back the
// next retransmission can be seconds away; dropped, the connection is
// dialled again by raft and reaches the peer within dialAttempt. Loopback
// and a live network acknowledge in far less than this, so it never cuts
// a healthy connection, a snapshot transfer included.
const userTimeout = 2 * time.Second

func dialOnce(address string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, Control: setUserTimeout}
	return d.Dial("tcp", address)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (t *TCPStreamLayer) handshake(c net.Conn, address string, timeout time.Duration) (net.Conn, error) {
	cfg := t.clientTLS.Clone()
	if host, _, err := net.SplitHostPort(address); err == nil && cfg.ServerName == "" {
		cfg.ServerName = host
	}
	tc := tls.Client(c, cfg)
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, fmt.Errorf("raft TLS handshake with %s: %w", address, err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}

// Accept waits for the next inbound Raft connection.
func (t *TCPStreamLayer) Accept() (net.Conn, error) {
	c, err := t.listener.Accept()
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	if t.serverTLS != nil {
		c = tls.Server(c, t.serverTLS)
	}
	tc := &trackedConn{Conn: c, layer: t}
	t.conns[tc] = struct{}{}
	return tc, nil
}

// Close stops listening and closes every accepted connection.
func (t *TCPStreamLayer) Close() error {
	t.mu.Lock()
	if !t.closed {
		close(t.done)
	}
	t.closed = true
	conns := t.conns
	t.conns = map[net.Conn]struct{}{}
	t.mu.Unlock()
	for c := range conns {
		c.(*trackedConn).Conn.Close()
	}
	return t.listener.Close()
}

type trackedConn struct {
	net.Conn
	layer *TCPStreamLayer
	once  sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.layer.mu.Lock()
		delete(c.layer.conns, c)
		c.layer.mu.Unlock()
	})
	return c.Conn.Close()
}

// Addr is the advertised address.
func (t *TCPStreamLayer) Addr() net.Addr { return t.advertise }
