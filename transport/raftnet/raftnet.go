// Package raftnet carries Raft traffic between binders over TCP: a
// raft.StreamLayer and the network transport built on it.
package raftnet

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

var _ raft.StreamLayer = (*TCPStreamLayer)(nil)

// ErrBadAdvertise is returned when the advertised address is not a concrete
// IP:port that other nodes can dial.
var ErrBadAdvertise = errors.New("raft address must be a reachable IP:port")

// TCPStreamLayer listens for and dials Raft connections over plain TCP.
type TCPStreamLayer struct {
	advertise net.Addr
	listener  net.Listener
}

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
	return &TCPStreamLayer{advertise: adv, listener: ln}, nil
}

// Dial opens a connection to another node's Raft address.
func (t *TCPStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(address), timeout)
}

// Accept waits for the next inbound Raft connection.
func (t *TCPStreamLayer) Accept() (net.Conn, error) { return t.listener.Accept() }

// Close stops listening.
func (t *TCPStreamLayer) Close() error { return t.listener.Close() }

// Addr is the advertised address.
func (t *TCPStreamLayer) Addr() net.Addr { return t.advertise }
