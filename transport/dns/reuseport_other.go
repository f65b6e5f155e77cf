//go:build !linux

package dns

import "net"

// reusePortConfig: one socket elsewhere than Linux.
func reusePortConfig() net.ListenConfig { return net.ListenConfig{} }

func udpSockets() int { return 1 }

// msgTrunc: cut datagrams are not flagged here; they fail to parse.
const msgTrunc = 0
