package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultRequestTimeout bounds one attempt on one binder when
// Config.RequestTimeout is zero.
const DefaultRequestTimeout = 5 * time.Second

// Config configures a Client.
type Config struct {
	// Binders are the base URLs of the binder nodes, e.g.
	// "http://127.0.0.1:8001". A bare "host:port" means http://host:port.
	// Trailing slashes are ignored and duplicates are dropped.
	Binders []string

	// HTTPClient sends the requests. When nil the Client uses its own
	// transport. Its Timeout, if any, must exceed the longest wait a caller
	// asks for (Watch waits up to 5 minutes per request); the Client bounds
	// each attempt itself.
	HTTPClient *http.Client

	// RequestTimeout bounds one attempt on one binder (default 5s). A long
	// poll (ResolveWait, Watch) gets its wait plus RequestTimeout instead.
	RequestTimeout time.Duration

	// OnRequest, when not nil, is called with the binder's base URL before
	// each attempt, possibly from several goroutines at once. It exists for
	// tests and metrics and must be fast.
	OnRequest func(binder string)

	// Token, when set, is sent as "Authorization: Bearer <token>" on every
	// request (binders started with --token-file require one).
	Token string

	// TLS, when set, is used for https:// binders (the CA to trust, and a
	// client certificate if the binders want one). Ignored when
	// HTTPClient is given.
	TLS *tls.Config

	// NoStaleFallback turns off the reads' last resort: when no binder
	// can serve a default read (none has heard from a leader within its
	// max staleness, or every reachable binder is catching up after a
	// restart), Lookup, Resolve, Services, ServicesOf and Watch ask again
	// with ?stale=true rather than fail, so reads keep working while a
	// single binder is up. The fallback keeps min_index: it never returns
	// a table that misses this client's own acknowledged writes.
	NoStaleFallback bool
}

// Validate normalises the binder URLs and applies defaults in place. It
// fails on an empty binder list, a malformed URL or a negative timeout.
func (c *Config) Validate() error {
	if len(c.Binders) == 0 {
		return errors.New("client config: no binders")
	}
	seen := make(map[string]bool, len(c.Binders))
	out := make([]string, 0, len(c.Binders))
	for _, b := range c.Binders {
		n, err := normaliseBinder(b)
		if err != nil {
			return fmt.Errorf("client config: %w", err)
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	c.Binders = out
	switch {
	case c.RequestTimeout < 0:
		return fmt.Errorf("client config: negative request timeout %v", c.RequestTimeout)
	case c.RequestTimeout == 0:
		c.RequestTimeout = DefaultRequestTimeout
	}
	return nil
}

// normaliseBinder turns a configured binder address into a base URL that
// request paths are appended to.
func normaliseBinder(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", errors.New("empty binder address")
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("binder %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("binder %q: scheme must be http or https", raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("binder %q: no host", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("binder %q: must not carry user info, a query or a fragment", raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return "", fmt.Errorf("binder %q: invalid port %q", raw, p)
		}
	}
	return strings.TrimRight(u.String(), "/"), nil
}
