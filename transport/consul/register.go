package consul

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/fsm"
)

// MaxBodyBytes caps a request body.
const MaxBodyBytes = 64 << 10

// Consul's own minimum interval of a check run by an agent: shorter ones
// are raised to it.
const minCheckInterval = time.Second

// registration is the body of PUT /v1/agent/service/register, as
// api.AgentServiceRegistration and python-consul send it. Keys match
// without case, as in Consul (encoding/json does that). Fields lieur
// cannot honour are read so that they can be refused by name rather than
// dropped.
type registration struct {
	ID                string
	Name              string
	Tags              []string
	Address           string
	Port              int
	Meta              map[string]string
	Weights           *apiWeights
	Check             *checkType
	Checks            []*checkType
	Kind              string
	Proxy             json.RawMessage
	Connect           json.RawMessage
	SocketPath        string
	Ports             json.RawMessage
	AI                json.RawMessage
	Namespace         string
	Partition         string
	EnableTagOverride bool            // accepted, without effect: lieur has no anti-entropy
	TaggedAddresses   json.RawMessage // accepted, not kept: lieur shows the address itself
}

// checkType is a check definition (Consul's CheckType), with the snake
// case aliases Consul reads.
type checkType struct {
	CheckID                        string
	ID                             string
	Name                           string
	Status                         string
	Notes                          string
	ScriptArgs                     []string
	Args                           []string `json:"args"`
	ScriptArgsSnake                []string `json:"script_args"`
	HTTP                           string
	Header                         map[string][]string
	Method                         string
	Body                           string
	DisableRedirects               bool
	TCP                            string
	TCPUseTLS                      bool
	UDP                            string
	GRPC                           string
	GRPCUseTLS                     bool
	H2PING                         string
	OSService                      string
	AliasNode                      string
	AliasService                   string
	DockerContainerID              string
	DockerContainerIDSnake         string `json:"docker_container_id"`
	Shell                          string
	TLSServerName                  string
	TLSServerNameSnake             string `json:"tls_server_name"`
	TLSSkipVerify                  bool
	TLSSkipVerifySnake             bool `json:"tls_skip_verify"`
	Interval                       duration
	Timeout                        duration
	TTL                            duration
	DeregisterCriticalServiceAfter duration
	DeregisterSnake                duration `json:"deregister_critical_service_after"`
	SuccessBeforePassing           int
	FailuresBeforeWarning          int
	FailuresBeforeCritical         int
	OutputMaxSize                  int
}

// duration is a Consul duration in JSON: "10s", or a number of
// nanoseconds.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s == "" {
			*d = 0
			return nil
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = duration(v)
		return nil
	}
	var ns float64
	if err := json.Unmarshal(b, &ns); err != nil {
		return err
	}
	*d = duration(time.Duration(ns))
	return nil
}

func (c *checkType) normalize() {
	if c.CheckID == "" {
		c.CheckID = c.ID
	}
	if len(c.ScriptArgs) == 0 {
		c.ScriptArgs = c.Args
	}
	if len(c.ScriptArgs) == 0 {
		c.ScriptArgs = c.ScriptArgsSnake
	}
	if c.DockerContainerID == "" {
		c.DockerContainerID = c.DockerContainerIDSnake
	}
	if c.TLSServerName == "" {
		c.TLSServerName = c.TLSServerNameSnake
	}
	c.TLSSkipVerify = c.TLSSkipVerify || c.TLSSkipVerifySnake
	if c.DeregisterCriticalServiceAfter == 0 {
		c.DeregisterCriticalServiceAfter = c.DeregisterSnake
	}
}

// empty reports a check with nothing set ("Check": {}), which Consul
// skips.
func (c *checkType) empty() bool {
	return c == nil || (c.CheckID == "" && c.Name == "" && c.Status == "" && c.Notes == "" && len(c.ScriptArgs) == 0 &&
		c.HTTP == "" && len(c.Header) == 0 && c.Method == "" && c.Body == "" && c.TCP == "" && c.UDP == "" && c.GRPC == "" &&
		c.H2PING == "" && c.OSService == "" && c.AliasNode == "" && c.AliasService == "" && c.DockerContainerID == "" &&
		c.Interval == 0 && c.Timeout == 0 && c.TTL == 0 && c.DeregisterCriticalServiceAfter == 0)
}

// kind is Consul's CheckType.Type(), in its order.
func (c *checkType) kind() string {
	switch {
	case c.GRPC != "" && c.Interval > 0:
		return "grpc"
	case c.HTTP != "" && c.Interval > 0:
		return fsm.CheckHTTP
	case c.TTL > 0:
		return fsm.CheckTTL
	case c.TCP != "" && c.Interval > 0:
		return fsm.CheckTCP
	case c.UDP != "" && c.Interval > 0:
		return "udp"
	case c.AliasNode != "" || c.AliasService != "":
		return "alias"
	case len(c.ScriptArgs) > 0 && c.DockerContainerID != "" && c.Interval > 0:
		return "docker"
	case len(c.ScriptArgs) > 0:
		return "script"
	case c.H2PING != "" && c.Interval > 0:
		return "h2ping"
	case c.OSService != "" && c.Interval > 0:
		return "os_service"
	}
	return ""
}

// validate is Consul's CheckType.Validate, with its messages.
func (c *checkType) validate() error {
	alias := c.AliasNode != "" || c.AliasService != ""
	interval := len(c.ScriptArgs) > 0 || c.HTTP != "" || c.TCP != "" || c.UDP != "" || c.GRPC != "" || c.H2PING != "" || c.OSService != ""
	switch {
	case c.Interval > 0 && c.TTL > 0:
		return errors.New("Interval and TTL cannot both be specified")
	case interval && c.Interval <= 0:
		return errors.New("Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks")
	case interval && alias:
		return errors.New("Interval cannot be set for Alias checks")
	case alias && c.TTL > 0:
		return errors.New("TTL must be not be set for Alias checks")
	case !interval && !alias && c.TTL <= 0:
		return errors.New("TTL must be > 0 for TTL checks")
	case c.OutputMaxSize < 0:
		return errors.New("MaxOutputMaxSize must be positive")
	case c.FailuresBeforeWarning > c.FailuresBeforeCritical:
		return errors.New("FailuresBeforeWarning can't be higher than FailuresBeforeCritical")
	}
	return nil
}

// supported refuses what lieur's checker cannot do, by name.
func (c *checkType) supported() error {
	switch k := c.kind(); k {
	case fsm.CheckTTL, fsm.CheckHTTP, fsm.CheckTCP:
	default:
		return fmt.Errorf("lieur does not run %s checks; it runs ttl, http and tcp checks", k)
	}
	switch {
	case c.Body != "":
		return errors.New("lieur's http checks send no Body")
	case c.TLSServerName != "":
		return errors.New("lieur's http checks take no TLSServerName")
	case c.TCPUseTLS:
		return errors.New("lieur's tcp checks do not speak TLS (TCPUseTLS)")
	case c.FailuresBeforeWarning > 0:
		return errors.New("lieur's checks have no FailuresBeforeWarning (only SuccessBeforePassing and FailuresBeforeCritical)")
	}
	return nil
}

// toCheck maps a definition onto lieur's check: id and name defaulted as
// Consul does ("service:<id>", "service:<id>:<n>" when the service has
// several; "Service '<name>' check"), critical unless a Status is given.
func (c *checkType) toCheck(serviceID, serviceName string, n, of int) fsm.Check {
	id := c.CheckID
	if id == "" {
		id = "service:" + serviceID
		if of > 1 {
			id += fmt.Sprintf(":%d", n)
		}
	}
	name := c.Name
	if name == "" {
		name = fmt.Sprintf("Service '%s' check", serviceName)
	}
	status := c.Status
	if status == "" {
		status = fsm.StatusCritical
	}
	out := fsm.Check{ID: id, Name: name, Kind: c.kind(), Notes: c.Notes, Status: status,
		SuccessBeforePassing: c.SuccessBeforePassing, FailuresBeforeCritical: c.FailuresBeforeCritical,
		DeregisterAfterMillis: ceilMillis(time.Duration(c.DeregisterCriticalServiceAfter))}
	switch out.Kind {
	case fsm.CheckTTL:
		out.TTLMillis = ceilMillis(time.Duration(c.TTL))
	case fsm.CheckHTTP, fsm.CheckTCP:
		out.IntervalMillis = ceilMillis(max(time.Duration(c.Interval), minCheckInterval))
		out.TimeoutMillis = ceilMillis(time.Duration(c.Timeout))
		out.Target = c.TCP
		if out.Kind == fsm.CheckHTTP {
			out.Target, out.Method, out.Header, out.TLSSkipVerify = c.HTTP, c.Method, c.Header, c.TLSSkipVerify
		}
	}
	return out
}

func ceilMillis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// badRequest is a 400 with Consul's message.
type badRequest struct{ msg string }

func (e badRequest) Error() string { return e.msg }

func badf(format string, args ...any) error { return badRequest{fmt.Sprintf(format, args...)} }

// decodeRegistration reads the body as Consul does: any Content-Type, a
// JSON object, fields matched without case, unknown fields ignored.
func decodeRegistration(w http.ResponseWriter, r *http.Request) (registration, error) {
	var reg registration
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err == nil {
		err = json.NewDecoder(bytes.NewReader(data)).Decode(&reg)
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return reg, badf("Request decode failed: request body exceeds %d bytes", MaxBodyBytes)
		}
		return reg, badf("Request decode failed: %v", err)
	}
	return reg, nil
}

// toRegistration checks a Consul registration in Consul's order and with
// its messages, then what lieur cannot honour, and maps it onto a binder
// registration. remote is the caller's address, the service's address
// when it names none (see docs/consul.md).
func (reg *registration) toRegistration(remote string) (binder.Registration, error) {
	if reg.Name == "" {
		return binder.Registration{}, badf("Missing service name")
	}
	if ip := net.ParseIP(reg.Address); ip != nil && ip.IsUnspecified() {
		return binder.Registration{}, badf("Invalid service address")
	}
	if err := binder.ValidateType(reg.Name); err != nil {
		return binder.Registration{}, badf("%s", invalidNameMessage(reg.Name))
	}
	if reg.Weights != nil {
		switch {
		case reg.Weights.Passing <= 0:
			return binder.Registration{}, badf("Invalid Weights: Passing must be greater than 0")
		case reg.Weights.Warning < 0:
			return binder.Registration{}, badf("Invalid Weights: Warning must be greater or equal than 0")
		}
	}
	if err := reg.unsupported(); err != nil {
		return binder.Registration{}, err
	}
	var defs []*checkType
	if !reg.Check.empty() {
		defs = append(defs, reg.Check)
	}
	for _, c := range reg.Checks {
		if !c.empty() {
			defs = append(defs, c)
		}
	}
	for _, c := range defs {
		c.normalize()
		if err := c.validate(); err != nil {
			return binder.Registration{}, badf("Invalid check: %v", err)
		}
	}
	for _, c := range defs {
		if c.Status != "" && c.Status != fsm.StatusPassing && c.Status != fsm.StatusWarning && c.Status != fsm.StatusCritical {
			return binder.Registration{}, badf("Status for checks must 'passing', 'warning', 'critical'")
		}
		if err := c.supported(); err != nil {
			return binder.Registration{}, badf("Invalid check: %v", err)
		}
	}
	address := reg.Address
	if address == "" {
		// Consul gives such a service its agent's address, the host it
		// runs on; lieur's nearest equivalent is where the call came from.
		address = remote
	}
	id := reg.ID
	if id == "" {
		// Not Consul's default (the name, unique per agent): lieur's ids
		// are cluster-wide, so two hosts' "web" would replace each other.
		id = binder.DefaultID(reg.Name, address, reg.Port)
	}
	out := binder.Registration{ID: id, Type: reg.Name, Address: address, Port: reg.Port, Meta: reg.Meta}
	if len(reg.Tags) > 0 {
		out.Tags = reg.Tags
	}
	if reg.Weights != nil {
		out.Weights = &fsm.Weights{Passing: reg.Weights.Passing, Warning: reg.Weights.Warning}
	}
	for i, c := range defs {
		out.Checks = append(out.Checks, c.toCheck(id, reg.Name, i+1, len(defs)))
	}
	return out, nil
}

// unsupported refuses, by name, what a registration asks for that lieur
// cannot give: Connect and gateways, sockets, several ports,
// namespaces and partitions.
func (reg *registration) unsupported() error {
	set := func(raw json.RawMessage) bool {
		v := strings.TrimSpace(string(raw))
		return v != "" && v != "null" && v != "{}" && v != "[]"
	}
	switch {
	case reg.Kind != "":
		return badf("Kind %q is not supported: lieur registers typical services only (no Connect proxies or gateways)", reg.Kind)
	case set(reg.Proxy), set(reg.Connect):
		return badf("Connect is not supported by lieur (Proxy, Connect)")
	case reg.SocketPath != "":
		return badf("SocketPath is not supported by lieur: a service is an address and a port")
	case set(reg.Ports):
		return badf("Ports is not supported by lieur: a service has one Port")
	case set(reg.AI):
		return badf("AI is not supported by lieur")
	case !isDefault(reg.Namespace):
		return badf("Namespaces are a Consul Enterprise feature, and lieur has none")
	case !isDefault(reg.Partition):
		return badf("Partitions are a Consul Enterprise feature, and lieur has none")
	}
	return nil
}
