package client

import (
	"maps"
	"net"
	"slices"
	"strconv"

	"github.com/lieur/lieur/transport/wire"
)

// Instance is one registered application server.
type Instance struct {
	ID      string
	Type    string
	Address string
	Port    int
	Meta    map[string]string
	// Status is "passing", "warning" (a stale lease, or a check in
	// warning) or "critical"; "" from a binder too old to say.
	Status string
	Tags   []string
}

// Addr returns the instance's address in host:port form, bracketing IPv6
// literals, ready for net.Dial.
func (i Instance) Addr() string {
	return net.JoinHostPort(i.Address, strconv.Itoa(i.Port))
}

// clone returns a copy that shares no map with i, so that instances handed
// out from the cache cannot be changed behind the cache's back.
func (i Instance) clone() Instance {
	i.Meta = maps.Clone(i.Meta)
	i.Tags = slices.Clone(i.Tags)
	return i
}

func fromWire(w wire.Instance) Instance {
	return Instance{ID: w.ID, Type: w.Type, Address: w.Address, Port: w.Port, Meta: w.Meta, Status: w.Status, Tags: w.Tags}
}

func fromWireList(ws []wire.Instance) []Instance {
	out := make([]Instance, len(ws))
	for i, w := range ws {
		out[i] = fromWire(w)
	}
	return out
}
