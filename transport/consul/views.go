package consul

import (
	"crypto/sha1" //nolint:gosec // a name-based UUID (RFC 4122 version 5), not a secret
	"encoding/hex"
	"net"
	"time"

	"github.com/lieur/lieur/fsm"
)

// lieur has no agents on the application hosts, so it makes up the node
// view Consul's clients expect: each instance runs on a node named after
// its address, with that address, in the binder's datacenter. Instances
// sharing an address share a node. See docs/consul.md.

// apiNode is Consul's catalog node (api.Node).
type apiNode struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
	CreateIndex     uint64
	ModifyIndex     uint64
}

type apiWeights struct {
	Passing int
	Warning int
}

type serviceAddress struct {
	Address string
	Port    int
}

// nodeService is the Service of a health entry (Consul's NodeService).
type nodeService struct {
	ID                string
	Service           string
	Tags              []string
	Address           string
	TaggedAddresses   map[string]serviceAddress `json:",omitempty"`
	Meta              map[string]string
	Port              int
	Weights           apiWeights
	EnableTagOverride bool
	CreateIndex       uint64
	ModifyIndex       uint64
}

// agentService is a service of /v1/agent/services (api.AgentService).
type agentService struct {
	ID                string
	Service           string
	Tags              []string
	Meta              map[string]string
	Port              int
	Address           string
	TaggedAddresses   map[string]serviceAddress `json:",omitempty"`
	Weights           apiWeights
	EnableTagOverride bool
	CreateIndex       uint64 `json:",omitempty"`
	ModifyIndex       uint64 `json:",omitempty"`
	ContentHash       string `json:",omitempty"`
	Datacenter        string
}

// checkDefinition is Consul's HealthCheckDefinition. Its durations are
// always strings ("0s" when unset): the Go client decodes them as
// api.ReadableDuration, which refuses "".
type checkDefinition struct {
	HTTP                           string
	Header                         map[string][]string
	Method                         string
	Body                           string
	TLSServerName                  string
	TLSSkipVerify                  bool
	TCP                            string
	TCPUseTLS                      bool
	UDP                            string
	GRPC                           string
	OSService                      string
	GRPCUseTLS                     bool
	Interval                       string
	Timeout                        string
	DeregisterCriticalServiceAfter string
}

// healthCheck is Consul's HealthCheck, in health answers and
// /v1/agent/checks.
type healthCheck struct {
	Node        string
	CheckID     string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	Type        string
	Interval    string
	Timeout     string
	ExposedPort int
	Definition  checkDefinition
	CreateIndex uint64
	ModifyIndex uint64
}

// healthEntry is one element of /v1/health/service/{name}.
type healthEntry struct {
	Node    apiNode
	Service nodeService
	Checks  []healthCheck
}

// catalogService is one element of /v1/catalog/service/{name}: node and
// service flattened (Consul's ServiceNode).
type catalogService struct {
	ID                       string
	Node                     string
	Address                  string
	Datacenter               string
	TaggedAddresses          map[string]string
	NodeMeta                 map[string]string
	ServiceKind              string
	ServiceID                string
	ServiceName              string
	ServiceTags              []string
	ServiceAddress           string
	ServiceTaggedAddresses   map[string]serviceAddress `json:",omitempty"`
	ServiceWeights           apiWeights
	ServiceMeta              map[string]string
	ServicePort              int
	ServiceEnableTagOverride bool
	CreateIndex              uint64
	ModifyIndex              uint64
}

// nodeNamespace is the RFC 4122 namespace of lieur's node ids.
var nodeNamespace = [16]byte{0x6c, 0x69, 0x65, 0x75, 0x72, 0x2d, 0x4e, 0x6f, 0x82, 0x64, 0x65, 0x2d, 0x69, 0x64, 0x73, 0x21}

// nodeID is a node's stable id: the version 5 UUID of its address, the
// same on every binder and across restarts.
func nodeID(address string) string {
	h := sha1.New() //nolint:gosec // see the import
	h.Write(nodeNamespace[:])
	h.Write([]byte(address))
	u := h.Sum(nil)[:16]
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:16])
	return string(b[:])
}

// nodeTaggedAddresses are the addresses Consul tags a node with; lieur's
// nodes have one address, so LAN and WAN are the same.
func nodeTaggedAddresses(address string) map[string]string {
	out := map[string]string{"lan": address, "wan": address}
	if fam := ipFamily(address); fam != "" {
		out["lan_"+fam] = address
		out["wan_"+fam] = address
	}
	return out
}

// serviceTaggedAddresses are what Consul adds to a service whose address
// is an IP.
func serviceTaggedAddresses(address string, port int) map[string]serviceAddress {
	fam := ipFamily(address)
	if fam == "" {
		return nil
	}
	a := serviceAddress{Address: address, Port: port}
	return map[string]serviceAddress{"lan_" + fam: a, "wan_" + fam: a}
}

func ipFamily(address string) string {
	ip := net.ParseIP(address)
	switch {
	case ip == nil:
		return ""
	case ip.To4() != nil:
		return "ipv4"
	}
	return "ipv6"
}

func (s *Server) node(address string, index uint64) apiNode {
	return apiNode{ID: nodeID(address), Node: address, Address: address, Datacenter: s.cfg.Datacenter,
		TaggedAddresses: nodeTaggedAddresses(address), Meta: map[string]string{}, CreateIndex: index, ModifyIndex: index}
}

func tags(inst *fsm.Instance) []string {
	if inst.Tags == nil {
		return []string{}
	}
	return inst.Tags
}

func meta(inst *fsm.Instance) map[string]string {
	if inst.Meta == nil {
		return map[string]string{}
	}
	return inst.Meta
}

// weights are the instance's, or Consul's default {1, 1}.
func weights(inst *fsm.Instance) apiWeights {
	if inst.Weights == nil {
		return apiWeights{Passing: 1, Warning: 1}
	}
	return apiWeights{Passing: inst.Weights.Passing, Warning: inst.Weights.Warning}
}

func nodeServiceOf(inst *fsm.Instance) nodeService {
	return nodeService{ID: inst.ID, Service: inst.Type, Tags: tags(inst), Address: inst.Address,
		TaggedAddresses: serviceTaggedAddresses(inst.Address, inst.Port), Meta: meta(inst), Port: inst.Port,
		Weights: weights(inst), CreateIndex: inst.Index, ModifyIndex: inst.Index}
}

func (s *Server) agentServiceOf(inst *fsm.Instance) agentService {
	return agentService{ID: inst.ID, Service: inst.Type, Tags: tags(inst), Meta: meta(inst), Port: inst.Port,
		Address: inst.Address, TaggedAddresses: serviceTaggedAddresses(inst.Address, inst.Port), Weights: weights(inst),
		CreateIndex: inst.Index, ModifyIndex: inst.Index, Datacenter: s.cfg.Datacenter}
}

func (s *Server) catalogServiceOf(inst *fsm.Instance) catalogService {
	return catalogService{ID: nodeID(inst.Address), Node: inst.Address, Address: inst.Address, Datacenter: s.cfg.Datacenter,
		TaggedAddresses: nodeTaggedAddresses(inst.Address), NodeMeta: map[string]string{},
		ServiceID: inst.ID, ServiceName: inst.Type, ServiceTags: tags(inst), ServiceAddress: inst.Address,
		ServiceTaggedAddresses: serviceTaggedAddresses(inst.Address, inst.Port), ServiceWeights: weights(inst),
		ServiceMeta: meta(inst), ServicePort: inst.Port, CreateIndex: inst.Index, ModifyIndex: inst.Index}
}

func (s *Server) healthEntryOf(inst *fsm.Instance) healthEntry {
	return healthEntry{Node: s.node(inst.Address, inst.Index), Service: nodeServiceOf(inst), Checks: checksOf(inst)}
}

// LieurCheckPrefix starts the id of the check lieur shows for an instance
// registered through its own API (no Consul checks) or holding a lease:
// "lieur:<instance id>". Its status is the lease's health: passing, or
// warning while the lease is stale (expired, but the instance still
// answers a probe).
const LieurCheckPrefix = "lieur:"

// checksOf is the instance's checks in Consul's shape: its own, plus
// lieur's synthesized one when it has none or has a lease, so that every
// entry has the check its health comes from.
func checksOf(inst *fsm.Instance) []healthCheck {
	out := make([]healthCheck, 0, len(inst.Checks)+1)
	for _, c := range inst.Checks {
		out = append(out, healthCheckOf(inst, c))
	}
	if len(inst.Checks) == 0 || inst.TTLMillis > 0 {
		out = append(out, lieurCheck(inst))
	}
	return out
}

func healthCheckOf(inst *fsm.Instance, c fsm.Check) healthCheck {
	def := checkDefinition{Header: c.Header, Method: c.Method, TLSSkipVerify: c.TLSSkipVerify,
		Interval: millis(c.IntervalMillis), Timeout: millis(c.TimeoutMillis), DeregisterCriticalServiceAfter: millis(c.DeregisterAfterMillis)}
	switch c.Kind {
	case fsm.CheckHTTP:
		def.HTTP = c.Target
	case fsm.CheckTCP:
		def.TCP = c.Target
	}
	return healthCheck{Node: inst.Address, CheckID: c.ID, Name: c.Name, Status: c.Status, Notes: c.Notes, Output: c.Output,
		ServiceID: inst.ID, ServiceName: inst.Type, ServiceTags: tags(inst), Type: c.Kind,
		Interval: millisOrEmpty(c.IntervalMillis), Timeout: millisOrEmpty(c.TimeoutMillis), Definition: def,
		CreateIndex: inst.Index, ModifyIndex: inst.Index}
}

func lieurCheck(inst *fsm.Instance) healthCheck {
	c := healthCheck{Node: inst.Address, CheckID: LieurCheckPrefix + inst.ID, Name: "lieur registration", Status: fsm.StatusPassing,
		Notes:     "registered through lieur's API: removed when a verified down-report or a lease expiry says it is gone",
		ServiceID: inst.ID, ServiceName: inst.Type, ServiceTags: tags(inst), Definition: emptyDefinition(),
		CreateIndex: inst.Index, ModifyIndex: inst.Index}
	if inst.TTLMillis > 0 {
		c.Name, c.Type = "lieur lease", fsm.CheckTTL
		c.Notes = "a lieur lease renewed by heartbeats (" + millis(inst.TTLMillis) + "): warning while it has expired but the instance still answers"
	}
	if inst.Health == fsm.HealthStaleLease {
		c.Status, c.Output = fsm.StatusWarning, "lease expired; the instance still answers a probe (stale-lease)"
	}
	return c
}

func emptyDefinition() checkDefinition {
	return checkDefinition{Interval: "0s", Timeout: "0s", DeregisterCriticalServiceAfter: "0s"}
}

func millis(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() }

func millisOrEmpty(ms int64) string {
	if ms == 0 {
		return ""
	}
	return millis(ms)
}

// passing reports whether every check of the instance passes: Consul's
// ?passing keeps only those.
func passing(inst *fsm.Instance) bool { return inst.Status() == fsm.StatusPassing }
