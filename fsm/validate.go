package fsm

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"unicode/utf8"
)

// The rules below are part of the log format: every node applies them to
// every command, so a command one node refuses is refused by all, at the
// same index. Loosening or tightening a rule changes what an old log
// replays to; it needs a new command tag, not an edit here.
//
// Restore checks every instance of a snapshot against the same rules, and
// Apply refuses whatever Restore would refuse: nothing accepted into the
// log can make a later snapshot unrestorable.

// Limits on what an instance may carry.
const (
	MaxIDLen        = 128
	MaxMetaPairs    = 64
	MaxMetaKeyLen   = 128
	MaxMetaValueLen = 1024
	MaxRequestIDLen = 64
	MaxReasonLen    = 64
	MaxScopeTypes   = 64
	MaxAddressLen   = 253
	MaxClusterIDLen = 64
	// MinTTLMillis and MaxTTLMillis bound a lease's TTL (1 s to 1 h).
	MinTTLMillis = 1000
	MaxTTLMillis = 3600 * 1000
)

var (
	hostnameRe  = regexp.MustCompile(`^(?i:[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.(?i:[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?))*\.?$`)
	requestIDRe = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

// ValidateType checks a service type: a DNS label, so that it can be a
// name in DNS answers.
func ValidateType(typ string) error {
	if !isDNSLabel(typ) {
		return fmt.Errorf("type %q must be a DNS label (lower-case letters, digits and '-', 1 to 63 characters, not starting or ending with '-')", truncate(typ))
	}
	return nil
}

// isDNSLabel matches ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ without the
// regexp engine: it is on every lookup.
func isDNSLabel(s string) bool {
	if len(s) < 1 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ValidateID checks an instance or node id: 1 to MaxIDLen letters, digits,
// '.', '_', ':' or '-', starting with a letter or digit, so that it is safe
// in a URL path and a log line.
func ValidateID(id string) error {
	if !isID(id) {
		return fmt.Errorf("id %q must be 1 to %d characters of letters, digits, '.', '_', ':' or '-', starting with a letter or digit", truncate(id), MaxIDLen)
	}
	return nil
}

func isID(s string) bool {
	if len(s) < 1 || len(s) > MaxIDLen || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(isAlnum(c) || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// ValidateRequestID checks an optional idempotency key.
func ValidateRequestID(id string) error {
	if id == "" {
		return nil
	}
	if len(id) > MaxRequestIDLen || !requestIDRe.MatchString(id) {
		return fmt.Errorf("request id %q must be 1 to %d letters, digits, '.', '_' or '-'", truncate(id), MaxRequestIDLen)
	}
	return nil
}

// ValidateAddress checks an instance's address: an IP address or a host
// name.
func ValidateAddress(addr string) error {
	if net.ParseIP(addr) == nil && (len(addr) > MaxAddressLen || !hostnameRe.MatchString(addr)) {
		return fmt.Errorf("address %q is neither an IP address nor a host name", truncate(addr))
	}
	return nil
}

// ValidatePort checks a TCP port.
func ValidatePort(port int) error {
	if port < 1 || port > 65535 {
		return fmt.Errorf("port %d is outside 1..65535", port)
	}
	return nil
}

// ValidateTTLMillis checks a lease's TTL; 0 is no lease.
func ValidateTTLMillis(ms int64) error {
	if ms != 0 && (ms < MinTTLMillis || ms > MaxTTLMillis) {
		return fmt.Errorf("ttl %dms is outside %dms..%dms", ms, MinTTLMillis, MaxTTLMillis)
	}
	return nil
}

// ValidateMeta checks an instance's metadata: bounded, printable UTF-8.
func ValidateMeta(meta map[string]string) error {
	if len(meta) > MaxMetaPairs {
		return fmt.Errorf("meta has %d pairs, at most %d allowed", len(meta), MaxMetaPairs)
	}
	for k, v := range meta {
		if k == "" || len(k) > MaxMetaKeyLen || !printable(k) {
			return fmt.Errorf("meta key %q must be 1 to %d printable characters", truncate(k), MaxMetaKeyLen)
		}
		if len(v) > MaxMetaValueLen || !printable(v) {
			return fmt.Errorf("meta value of %q must be at most %d printable characters", truncate(k), MaxMetaValueLen)
		}
	}
	return nil
}

// ValidateScope checks the service types a write is limited to (nil: any).
func ValidateScope(scope []string) error {
	if scope == nil {
		return nil
	}
	if len(scope) == 0 || len(scope) > MaxScopeTypes {
		return fmt.Errorf("scope must name 1 to %d service types", MaxScopeTypes)
	}
	for _, t := range scope {
		if err := ValidateType(t); err != nil {
			return fmt.Errorf("scope: %w", err)
		}
	}
	return nil
}

func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// truncate keeps error messages short when the input is huge.
func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// validateInstance checks what the table would hold. Restore applies it to
// every instance of a snapshot; Apply applies it (through Validate) to
// every registration.
func validateInstance(inst *Instance) error {
	if err := ValidateID(inst.ID); err != nil {
		return err
	}
	if err := ValidateType(inst.Type); err != nil {
		return err
	}
	if err := ValidateAddress(inst.Address); err != nil {
		return err
	}
	if err := ValidatePort(inst.Port); err != nil {
		return err
	}
	if err := ValidateTTLMillis(inst.TTLMillis); err != nil {
		return err
	}
	if inst.Health != "" && inst.Health != HealthStaleLease {
		return fmt.Errorf("health %q is not one the table knows", truncate(inst.Health))
	}
	if inst.Flaps < 0 {
		return fmt.Errorf("flaps %d is negative", inst.Flaps)
	}
	if err := validateChecks(inst.ID, inst.Tags, inst.Weights, inst.Checks); err != nil {
		return err
	}
	return ValidateMeta(inst.Meta)
}

// validateNode checks a binder's announced address.
func validateNode(id, httpAddr string) error {
	if err := ValidateID(id); err != nil {
		return fmt.Errorf("node %w", err)
	}
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil || host == "" || port == "" || len(httpAddr) > MaxAddressLen+6 || !printable(httpAddr) {
		return fmt.Errorf("http_addr %q is not host:port", truncate(httpAddr))
	}
	return nil
}

// Validate checks a decoded command against the table's rules. It wraps
// ErrBadCommand and names the field at fault. Apply refuses a command
// Validate refuses, without changing the table; a leader calls it before a
// command reaches the log, to answer 400 at once.
func Validate(cmd Command) error {
	err := validate(cmd)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadCommand, cmd.Tag(), err)
	}
	return nil
}

func validate(cmd Command) error {
	switch c := cmd.(type) {
	case RegisterCmd:
		inst := Instance{ID: c.ID, Type: c.Type, Address: c.Address, Port: c.Port, Meta: c.Meta, TTLMillis: c.TTLMillis,
			Tags: c.Tags, Weights: c.Weights, Checks: c.Checks}
		if err := validateInstance(&inst); err != nil {
			return err
		}
		return ValidateScope(c.Scope)
	case DeregisterCmd:
		if err := ValidateID(c.ID); err != nil {
			return err
		}
		if err := ValidateRequestID(c.RequestID); err != nil {
			return err
		}
		return ValidateScope(c.Scope)
	case RemoveCmd:
		if err := ValidateID(c.ID); err != nil {
			return err
		}
		if len(c.Reason) > MaxReasonLen || !printable(c.Reason) {
			return fmt.Errorf("reason %q must be at most %d printable characters", truncate(c.Reason), MaxReasonLen)
		}
		return ValidateRequestID(c.RequestID)
	case LeaseStateCmd:
		return ValidateID(c.ID)
	case CheckStatusCmd:
		if err := ValidateID(c.ID); err != nil {
			return err
		}
		if err := ValidateID(c.CheckID); err != nil {
			return fmt.Errorf("check %w", err)
		}
		if !validStatus(c.Status) {
			return fmt.Errorf("status %q is not passing, warning or critical", truncate(c.Status))
		}
		if len(c.Output) > MaxOutputLen || !utf8Valid(c.Output) {
			return fmt.Errorf("output longer than %d bytes or not UTF-8", MaxOutputLen)
		}
		return nil
	case NodeMetaCmd:
		if c.Format < 0 || c.Format > 1000 {
			return fmt.Errorf("format %d is outside 0..1000", c.Format)
		}
		return validateNode(c.NodeID, c.HTTPAddr)
	case NodeForgetCmd:
		if err := ValidateID(c.NodeID); err != nil {
			return fmt.Errorf("node %w", err)
		}
		return nil
	case ClusterIDCmd:
		if c.ClusterID == "" || len(c.ClusterID) > MaxClusterIDLen || !requestIDRe.MatchString(c.ClusterID) {
			return fmt.Errorf("cluster_id %q must be 1 to %d letters, digits, '.', '_' or '-'", truncate(c.ClusterID), MaxClusterIDLen)
		}
		return nil
	case BatchCmd:
		if len(c.Commands) == 0 {
			return fmt.Errorf("empty batch")
		}
		return nil
	case RestoreCmd:
		return validateRestore(c)
	}
	return fmt.Errorf("unhandled command %T", cmd)
}
