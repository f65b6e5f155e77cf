package binder

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/lieur/lieur/fsm"
)

// The rules themselves live in fsm: the table applies them to every
// command, wherever it entered. These wrappers check a request early and
// wrap ErrInvalid, so the caller gets a 400 naming the field before
// anything reaches the log.

// Limits on what a registration may carry (see fsm).
const (
	MaxIDLen        = fsm.MaxIDLen
	MaxMetaPairs    = fsm.MaxMetaPairs
	MaxMetaKeyLen   = fsm.MaxMetaKeyLen
	MaxMetaValueLen = fsm.MaxMetaValueLen
	MaxRequestIDLen = fsm.MaxRequestIDLen
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
	// Scope, when not nil, limits the registration to these types (a
	// register token bound to them): the leader refuses it, with
	// ErrForbidden, if it would create or replace an instance of another
	// type.
	Scope []string
	// Tags, Weights and Checks: Consul-shaped registrations (see fsm.Check;
	// a check's Status is its initial status). They need every binder to
	// run a build that applies them (ErrUpgrading otherwise).
	Tags    []string
	Weights *fsm.Weights
	Checks  []fsm.Check
}

// DefaultID is the id given to a registration that names none.
func DefaultID(typ, address string, port int) string {
	return typ + "-" + address + "-" + strconv.Itoa(port)
}

// ValidateType checks a service type: a DNS label.
func ValidateType(typ string) error { return invalid(fsm.ValidateType(typ)) }

// ValidateID checks an instance id.
func ValidateID(id string) error { return invalid(fsm.ValidateID(id)) }

// ValidateRequestID checks an optional idempotency key.
func ValidateRequestID(id string) error { return invalid(fsm.ValidateRequestID(id)) }

func invalid(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %v", ErrInvalid, err)
}

// Normalize validates r and fills in its default id.
func (r *Registration) Normalize() error {
	if err := ValidateType(r.Type); err != nil {
		return err
	}
	if err := invalid(fsm.ValidateAddress(r.Address)); err != nil {
		return err
	}
	if err := invalid(fsm.ValidatePort(r.Port)); err != nil {
		return err
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
	if err := invalid(fsm.ValidateMeta(r.Meta)); err != nil {
		return err
	}
	if err := invalid(fsm.Validate(fsm.RegisterCmd{ID: r.ID, Type: r.Type, Address: r.Address, Port: r.Port, Tags: r.Tags, Weights: r.Weights, Checks: r.Checks})); err != nil {
		return err
	}
	for _, c := range r.Checks {
		if err := checkTargetsInstance(c, r.Address); err != nil {
			return err
		}
	}
	return invalid(fsm.ValidateScope(r.Scope))
}

// checkTargetsInstance refuses a tcp or http check aimed anywhere but the
// instance's own address. The leader runs every check: a check could
// otherwise make it connect to whatever it can reach (its own loopback, a
// cloud metadata service, an internal network) on the registrant's behalf,
// which Consul, running checks on the application's host, does not risk.
func checkTargetsInstance(c fsm.Check, address string) error {
	var host string
	switch c.Kind {
	case fsm.CheckTCP:
		host, _, _ = net.SplitHostPort(c.Target)
	case fsm.CheckHTTP:
		if u, err := url.Parse(c.Target); err == nil {
			host = u.Hostname()
		}
	default:
		return nil
	}
	if !sameHost(host, address) {
		return fmt.Errorf("%w: check %q targets %q, not the instance's address %q: the leader runs checks, so a check may only reach its own instance", ErrInvalid, c.ID, host, address)
	}
	return nil
}

func sameHost(a, b string) bool {
	if ia, ib := net.ParseIP(a), net.ParseIP(b); ia != nil && ib != nil {
		return ia.Equal(ib)
	}
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}
