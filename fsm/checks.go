package fsm

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
	"unicode/utf8"
)

func utf8Valid(s string) bool { return utf8.ValidString(s) }

// Check statuses, as Consul names them.
const (
	StatusPassing  = "passing"
	StatusWarning  = "warning"
	StatusCritical = "critical"
)

// Check kinds.
const (
	CheckTTL  = "ttl"  // the owner reports its status (a lease with a status)
	CheckTCP  = "tcp"  // the leader connects to Target
	CheckHTTP = "http" // the leader requests Target
)

// ReasonCriticalTooLong is recorded when an instance whose check stayed
// critical for its check's DeregisterAfterMillis is removed.
const ReasonCriticalTooLong = "critical-too-long"

// Limits of a check.
const (
	MaxChecks      = 16
	MaxOutputLen   = 4096
	MaxTagsPerInst = 64
	MaxTagLen      = 255
)

// Check is one health check of an instance: its definition and its last
// status. The status changes only through the log (CheckStatusCmd), and
// only when it changes: a check that keeps its status writes nothing.
type Check struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	Kind string `json:"kind"`
	// TTLMillis: a ttl check turns critical when its owner has not
	// reported for this long.
	TTLMillis int64 `json:"ttl_ms,omitempty"`
	// IntervalMillis and TimeoutMillis: how often a tcp or http check
	// runs, and how long one run may take.
	IntervalMillis int64 `json:"interval_ms,omitempty"`
	TimeoutMillis  int64 `json:"timeout_ms,omitempty"`
	// Target: host:port for tcp, a URL for http.
	Target        string              `json:"target,omitempty"`
	Method        string              `json:"method,omitempty"`
	Header        map[string][]string `json:"header,omitempty"`
	TLSSkipVerify bool                `json:"tls_skip_verify,omitempty"`
	// SuccessBeforePassing and FailuresBeforeCritical: consecutive results
	// needed before the status moves.
	SuccessBeforePassing   int `json:"success_before_passing,omitempty"`
	FailuresBeforeCritical int `json:"failures_before_critical,omitempty"`
	// DeregisterAfterMillis: an instance whose check stays critical this
	// long is removed (reason critical-too-long).
	DeregisterAfterMillis int64  `json:"deregister_after_ms,omitempty"`
	Notes                 string `json:"notes,omitempty"`
	Status                string `json:"status"`
	Output                string `json:"output,omitempty"`
}

// Weights are an instance's DNS SRV weights by health, as Consul has them.
type Weights struct {
	Passing int `json:"passing"`
	Warning int `json:"warning"`
}

// CheckStatusCmd sets a check's status and output. RegIndex names the
// registration, as in RemoveCmd, so a status decided about an older
// registration never lands on a newer one.
type CheckStatusCmd struct {
	ID       string `json:"id"`
	RegIndex uint64 `json:"reg_index"`
	CheckID  string `json:"check_id"`
	Status   string `json:"status"`
	Output   string `json:"output,omitempty"`
}

func (CheckStatusCmd) Tag() string { return TagCheckStatus }

// Status is the instance's aggregate health: the worst of its checks, and
// warning for a stale lease.
func (i *Instance) Status() string {
	worst := StatusPassing
	if i.Health == HealthStaleLease {
		worst = StatusWarning
	}
	for _, c := range i.Checks {
		if rank(c.Status) > rank(worst) {
			worst = c.Status
		}
	}
	return worst
}

func rank(status string) int {
	switch status {
	case StatusCritical:
		return 2
	case StatusWarning:
		return 1
	}
	return 0
}

// CheckByID returns the instance's check with that id.
func (i *Instance) CheckByID(id string) (Check, bool) {
	for _, c := range i.Checks {
		if c.ID == id {
			return c, true
		}
	}
	return Check{}, false
}

func validStatus(s string) bool {
	return s == StatusPassing || s == StatusWarning || s == StatusCritical
}

// validateChecks checks an instance's tags, weights and checks. Check ids
// name one check cluster-wide; those of Consul's default form,
// "service:<id>[:<n>]", must name this instance, so that one registrant
// cannot take the default ids of another's instances; "lieur:" is lieur's
// (the checks it shows for instances without any).
func validateChecks(id string, tags []string, w *Weights, checks []Check) error {
	if len(tags) > MaxTagsPerInst {
		return fmt.Errorf("%d tags, at most %d allowed", len(tags), MaxTagsPerInst)
	}
	for _, t := range tags {
		if t == "" || len(t) > MaxTagLen || !printable(t) {
			return fmt.Errorf("tag %q must be 1 to %d printable characters", truncate(t), MaxTagLen)
		}
	}
	if w != nil && (w.Passing < 1 || w.Passing > 65535 || w.Warning < 0 || w.Warning > 65535) {
		return fmt.Errorf("weights %d/%d: passing 1..65535, warning 0..65535", w.Passing, w.Warning)
	}
	if len(checks) > MaxChecks {
		return fmt.Errorf("%d checks, at most %d allowed", len(checks), MaxChecks)
	}
	seen := map[string]bool{}
	for _, c := range checks {
		if err := ValidateID(c.ID); err != nil {
			return fmt.Errorf("check %w", err)
		}
		if seen[c.ID] {
			return fmt.Errorf("check id %q given twice", c.ID)
		}
		if rest, ok := strings.CutPrefix(c.ID, "service:"); ok && rest != id {
			n, own := strings.CutPrefix(rest, id+":")
			if !own || n == "" || strings.Trim(n, "0123456789") != "" {
				return fmt.Errorf("check id %q: a service: check id must name this instance (service:%s or service:%s:N)", c.ID, id, id)
			}
		}
		if strings.HasPrefix(c.ID, "lieur:") {
			return fmt.Errorf("check id %q: the lieur: prefix is reserved", c.ID)
		}
		seen[c.ID] = true
		if len(c.Name) > MaxTagLen || !printable(c.Name) || len(c.Notes) > MaxOutputLen || !printable(c.Notes) {
			return fmt.Errorf("check %q: name or notes too long or not printable", c.ID)
		}
		if !validStatus(c.Status) {
			return fmt.Errorf("check %q: status %q is not passing, warning or critical", c.ID, truncate(c.Status))
		}
		if len(c.Output) > MaxOutputLen || !utf8Valid(c.Output) {
			return fmt.Errorf("check %q: output longer than %d bytes or not UTF-8", c.ID, MaxOutputLen)
		}
		if c.DeregisterAfterMillis < 0 || c.SuccessBeforePassing < 0 || c.FailuresBeforeCritical < 0 || c.SuccessBeforePassing > 100 || c.FailuresBeforeCritical > 100 {
			return fmt.Errorf("check %q: negative or too large thresholds", c.ID)
		}
		switch c.Kind {
		case CheckTTL:
			if c.TTLMillis < 100 || c.TTLMillis > MaxTTLMillis*24 {
				return fmt.Errorf("check %q: ttl %dms outside 100ms..24h", c.ID, c.TTLMillis)
			}
		case CheckTCP, CheckHTTP:
			if c.IntervalMillis < 100 || c.IntervalMillis > MaxTTLMillis*24 || c.TimeoutMillis < 0 || c.TimeoutMillis > c.IntervalMillis*10 {
				return fmt.Errorf("check %q: interval %dms (100ms..24h) or timeout %dms", c.ID, c.IntervalMillis, c.TimeoutMillis)
			}
			if c.Kind == CheckTCP {
				if host, port, err := net.SplitHostPort(c.Target); err != nil || host == "" || port == "" {
					return fmt.Errorf("check %q: tcp %q is not host:port", c.ID, truncate(c.Target))
				}
			} else {
				u, err := url.Parse(c.Target)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !printable(c.Target) || len(c.Target) > 2048 {
					return fmt.Errorf("check %q: http %q is not an http(s) URL", c.ID, truncate(c.Target))
				}
			}
			if len(c.Method) > 16 || !printable(c.Method) || len(c.Header) > 32 {
				return fmt.Errorf("check %q: method or header out of bounds", c.ID)
			}
			keys := make([]string, 0, len(c.Header))
			for k := range c.Header {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if k == "" || !printable(k) || len(c.Header[k]) > 16 {
					return fmt.Errorf("check %q: header %q", c.ID, truncate(k))
				}
				for _, v := range c.Header[k] {
					if len(v) > 1024 || !printable(v) {
						return fmt.Errorf("check %q: header %q value", c.ID, truncate(k))
					}
				}
			}
		default:
			return fmt.Errorf("check %q: kind %q is not ttl, tcp or http", c.ID, truncate(c.Kind))
		}
	}
	return nil
}

// normalize holds empty collections as nil, as snapshots (which omit them)
// bring them back: a restored table equals the one that was saved.
func normalize(inst *Instance) {
	if len(inst.Meta) == 0 {
		inst.Meta = nil
	}
	if len(inst.Tags) == 0 {
		inst.Tags = nil
	}
	if len(inst.Checks) == 0 {
		inst.Checks = nil
	}
	for i := range inst.Checks {
		if len(inst.Checks[i].Header) == 0 {
			inst.Checks[i].Header = nil
		}
	}
}

// ErrCheckTaken is returned for a registration naming a check id that
// another instance's check has: check ids name one check cluster-wide, as
// an agent's do in Consul.
var ErrCheckTaken = errors.New("check id taken")

type checkOwner struct{ id, check string }

// checkTakenLocked reports a check of checks whose id another instance
// than id holds.
func (f *FSM) checkTakenLocked(id string, checks []Check) (checkOwner, bool) {
	for _, c := range checks {
		if owner, ok := f.checks[c.ID]; ok && owner != id {
			return checkOwner{id: owner, check: c.ID}, true
		}
	}
	return checkOwner{}, false
}

// indexChecksLocked keeps the check id -> instance id index in step when
// old (or nil) becomes next (or nil).
func (f *FSM) indexChecksLocked(old, next *Instance) {
	if old != nil {
		for _, c := range old.Checks {
			delete(f.checks, c.ID)
		}
	}
	if next != nil {
		for _, c := range next.Checks {
			f.checks[c.ID] = next.ID
		}
	}
}

// CheckOwner returns the id of the instance that has check checkID.
func (f *FSM) CheckOwner(checkID string) (string, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	id, ok := f.checks[checkID]
	return id, ok
}
