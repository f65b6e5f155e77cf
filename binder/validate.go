package binder

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on what a registration may carry.
const (
	MaxIDLen        = 128
	MaxMetaPairs    = 64
	MaxMetaKeyLen   = 128
	MaxMetaValueLen = 1024
)

var (
	idRe       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)
	hostnameRe = regexp.MustCompile(`^(?i:[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.(?i:[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?))*\.?$`)
)

// Registration is what an application server registers.
type Registration struct {
	ID      string
	Type    string
	Address string
	Port    int
	Meta    map[string]string
	// TTL, when not zero, makes the registration a lease renewed by
	// heartbeats (MinTTL to MaxTTL).
	TTL time.Duration
}

// DefaultID is the id given to a registration that names none.
func DefaultID(typ, address string, port int) string {
	return typ + "-" + address + "-" + strconv.Itoa(port)
}

// ValidateType checks a service type: a DNS label.
func ValidateType(typ string) error {
	if !isDNSLabel(typ) {
		return fmt.Errorf("%w: type %q must be a DNS label (lower-case letters, digits and '-', 1 to 63 characters, not starting or ending with '-')", ErrInvalid, truncate(typ))
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

// ValidateID checks an instance id.
func ValidateID(id string) error {
	if id == "" || len(id) > MaxIDLen || !idRe.MatchString(id) {
		return fmt.Errorf("%w: id %q must be 1 to %d characters of letters, digits, '.', '_', ':' or '-', starting with a letter or digit", ErrInvalid, truncate(id), MaxIDLen)
	}
	return nil
}

// MaxRequestIDLen bounds a request id.
const MaxRequestIDLen = 64

var requestIDRe = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// ValidateRequestID checks an optional idempotency key.
func ValidateRequestID(id string) error {
	if id == "" {
		return nil
	}
	if len(id) > MaxRequestIDLen || !requestIDRe.MatchString(id) {
		return fmt.Errorf("%w: request id %q must be 1 to %d letters, digits, '.', '_' or '-'", ErrInvalid, truncate(id), MaxRequestIDLen)
	}
	return nil
}

// Normalize validates r and fills in its default id.
func (r *Registration) Normalize() error {
	if err := ValidateType(r.Type); err != nil {
		return err
	}
	if net.ParseIP(r.Address) == nil && (len(r.Address) > 253 || !hostnameRe.MatchString(r.Address)) {
		return fmt.Errorf("%w: address %q is neither an IP address nor a host name", ErrInvalid, truncate(r.Address))
	}
	if r.Port < 1 || r.Port > 65535 {
		return fmt.Errorf("%w: port %d is outside 1..65535", ErrInvalid, r.Port)
	}
	if r.ID == "" {
		r.ID = DefaultID(r.Type, r.Address, r.Port)
	}
	if err := ValidateID(r.ID); err != nil {
		return err
	}
	if r.TTL != 0 && (r.TTL < MinTTL || r.TTL > MaxTTL) {
		return fmt.Errorf("%w: ttl %s is outside %s..%s", ErrInvalid, r.TTL, MinTTL, MaxTTL)
	}
	if len(r.Meta) > MaxMetaPairs {
		return fmt.Errorf("%w: meta has %d pairs, at most %d allowed", ErrInvalid, len(r.Meta), MaxMetaPairs)
	}
	for k, v := range r.Meta {
		if k == "" || len(k) > MaxMetaKeyLen || !utf8.ValidString(k) || strings.ContainsFunc(k, isControl) {
			return fmt.Errorf("%w: meta key %q must be 1 to %d printable characters", ErrInvalid, truncate(k), MaxMetaKeyLen)
		}
		if len(v) > MaxMetaValueLen || !utf8.ValidString(v) || strings.ContainsFunc(v, isControl) {
			return fmt.Errorf("%w: meta value of %q must be at most %d printable characters", ErrInvalid, truncate(k), MaxMetaValueLen)
		}
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// truncate keeps error messages short when the input is huge.
func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
