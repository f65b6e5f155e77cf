package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lieur/lieur/transport/wire"
)

// maxBody bounds a response body. The largest answer is the full service
// table; this leaves room for hundreds of thousands of instances.
const maxBody = 64 << 20

// Client talks to a set of binder nodes. It is safe for concurrent use.
type Client struct {
	binders   []string
	hc        *http.Client
	timeout   time.Duration
	onRequest func(string)
	// staleFallback: see Config.NoStaleFallback.
	staleFallback bool
	token         string

	// life ends when Close is called; Watch loops derive from it.
	life     context.Context
	stopLife context.CancelFunc

	mu       sync.Mutex // guards closed and the Add side of watchers
	closed   bool
	watchers sync.WaitGroup

	// seen is the highest Raft index this client's writes and reports
	// returned. Reads carry it as min_index, so a client reads its own
	// writes from any binder (a lagging binder answers 503 "behind" and
	// the client asks another).
	seen atomic.Uint64

	cacheMu sync.Mutex
	cache   map[string]Instance
	// epoch counts Forget calls per type, so that a lookup started before a
	// Forget cannot put back the instance the Forget dropped.
	epoch map[string]uint64
}

// New validates cfg (see Config.Validate) and returns a Client. The Client
// keeps its own copy of the configuration.
func New(cfg Config) (*Client, error) {
	cfg.Binders = append([]string(nil), cfg.Binders...)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		// A private transport, so Close can drop its idle connections
		// without touching http.DefaultTransport's.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = cfg.TLS
		hc = &http.Client{Transport: tr}
	}
	life, stop := context.WithCancel(context.Background())
	return &Client{
		binders:       cfg.Binders,
		hc:            hc,
		timeout:       cfg.RequestTimeout,
		onRequest:     cfg.OnRequest,
		staleFallback: !cfg.NoStaleFallback,
		token:         cfg.Token,
		life:          life,
		stopLife:      stop,
		cache:         map[string]Instance{},
		epoch:         map[string]uint64{},
	}, nil
}

// Binders returns the normalised base URLs the Client uses.
func (c *Client) Binders() []string { return append([]string(nil), c.binders...) }

// Close ends every Watch loop (their channels are closed before Close
// returns) and closes idle connections. Calls made after Close fail with
// ErrClosed; calls already in flight run to completion. Close is
// idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.stopLife()
	c.watchers.Wait()
	c.hc.CloseIdleConnections()
	return nil
}

// noteIndex records an index returned by a write.
func (c *Client) noteIndex(index uint64) {
	for {
		cur := c.seen.Load()
		if index <= cur || c.seen.CompareAndSwap(cur, index) {
			return
		}
	}
}

// readQuery is the query of a read that must see this client's writes.
func (c *Client) readQuery() url.Values {
	seen := c.seen.Load()
	if seen == 0 {
		return nil
	}
	return url.Values{wire.QueryMinIndex: {strconv.FormatUint(seen, 10)}}
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// call describes one API request, independent of the binder it goes to.
type call struct {
	method string
	path   string      // escaped path, without the binder's base
	query  url.Values  // sent with every attempt; wait is added per attempt
	body   any         // JSON-encoded when not nil
	header http.Header // extra request headers

	// idempotent: the request may be sent again after it may have reached
	// a binder.
	idempotent bool
	// notFound is the sentinel a 404 stands for in this call.
	notFound error
	// wait, when positive, makes the call a long poll: each attempt sends
	// ?wait= with what is left of it and gets wait+timeout to answer.
	wait time.Duration
	// only, when set, is the one binder to ask (no failover).
	only string
}

func (cl *call) String() string { return cl.method + " " + cl.path }

// reply is a response that arrived in full.
type reply struct {
	binder string
	status int
	header http.Header
	body   []byte
}

// notSentError marks a failure that happened before a request could reach
// a binder, so even a non-idempotent request may go elsewhere.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

// mayHaveArrived reports whether a failed attempt may have been received
// (and acted on) by the binder. Only failures to connect are known not to
// have been.
func mayHaveArrived(err error) bool {
	var ns *notSentError
	if errors.As(err, &ns) {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	return true
}

// do runs cl against the binders in a fresh random order until one gives a
// final answer. It returns the reply for 2xx; for a final error answer it
// returns the reply too (callers read headers from 404s) with an *APIError.
func (c *Client) do(ctx context.Context, cl call) (*reply, error) {
	if c.isClosed() {
		return nil, fmt.Errorf("client: %s: %w", &cl, ErrClosed)
	}
	var body []byte
	if cl.body != nil {
		var err error
		if body, err = json.Marshal(cl.body); err != nil {
			return nil, fmt.Errorf("client: %s: encode request: %w", &cl, err)
		}
	}
	binders := []string{cl.only}
	if cl.only == "" {
		binders = make([]string, len(c.binders))
		for i, j := range rand.Perm(len(c.binders)) {
			binders[i] = c.binders[j]
		}
	}
	var waitUntil time.Time
	if cl.wait > 0 {
		waitUntil = time.Now().Add(cl.wait)
	}

	var lastErr error
	for _, b := range binders {
		if err := ctx.Err(); err != nil {
			if lastErr != nil {
				return nil, fmt.Errorf("client: %s: %w (last error: %v)", &cl, err, lastErr)
			}
			return nil, fmt.Errorf("client: %s: %w", &cl, err)
		}
		rep, err := c.attempt(ctx, b, &cl, body, waitUntil)
		if err != nil {
			if !cl.idempotent && mayHaveArrived(err) {
				return nil, fmt.Errorf("client: %s via %s: %w: %w", &cl, b, ErrOutcomeUnknown, err)
			}
			if cerr := ctx.Err(); cerr != nil {
				// The caller gave up; another binder would not help.
				if errors.Is(err, cerr) {
					return nil, fmt.Errorf("client: %s via %s: %w", &cl, b, err)
				}
				return nil, fmt.Errorf("client: %s via %s: %w: %w", &cl, b, cerr, err)
			}
			lastErr = fmt.Errorf("%s: %w", b, err)
			continue
		}
		if rep.status >= 200 && rep.status < 300 {
			return rep, nil
		}
		apiErr := newAPIError(rep, &cl)
		switch {
		case apiErr.Code == wire.CodeOutcomeUnknown && !cl.idempotent:
			return rep, apiErr
		case rep.status >= 500:
			lastErr = apiErr
			continue
		default:
			return rep, apiErr
		}
	}
	return nil, fmt.Errorf("client: %s: %w (tried %d): %w", &cl, ErrNoBinder, len(binders), lastErr)
}

// read runs a read (a lookup, a list, a watch's query). When no binder
// could serve it as a default read (none has heard from a leader within
// its max staleness, or every one is catching up after a restart) and the
// stale fallback is on, it asks again with ?stale=true: a binder's memory
// beats no answer. The fallback keeps min_index, so it still never returns
// a table older than this client's own acknowledged writes. It returns the
// call that was answered.
func (c *Client) read(ctx context.Context, cl call) (*reply, call, error) {
	rep, err := c.do(ctx, cl)
	if err == nil || !c.staleFallback || ctx.Err() != nil || !errors.Is(err, ErrNoBinder) {
		return rep, cl, err
	}
	stale := cl
	stale.query = url.Values{}
	for k, v := range cl.query {
		stale.query[k] = v
	}
	stale.query.Set("stale", "true")
	srep, serr := c.do(ctx, stale)
	if serr == nil || (srep != nil && srep.status == http.StatusNotFound) {
		return srep, stale, serr
	}
	return rep, cl, err
}

// attempt sends cl to one binder and reads the whole answer. An error means
// no complete answer arrived.
func (c *Client) attempt(ctx context.Context, binder string, cl *call, body []byte, waitUntil time.Time) (*reply, error) {
	timeout := c.timeout
	q := cl.query
	if !waitUntil.IsZero() {
		w := max(time.Until(waitUntil), 0)
		q = url.Values{}
		for k, v := range cl.query {
			q[k] = v
		}
		q.Set("wait", formatWait(w))
		timeout += w
	}
	target := binder + cl.path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}

	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, cl.method, target, rd)
	if err != nil {
		return nil, &notSentError{fmt.Errorf("build request: %w", err)}
	}
	for k, v := range cl.header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(req, binder, maxBody)
}

// send sends req, which names its body's type and what it accepts, to
// binder with the client's token, and reads at most limit bytes of the
// answer.
func (c *Client) send(req *http.Request, binder string, limit int) (*reply, error) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.onRequest != nil {
		c.onRequest(binder)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read response (status %d): %w", resp.StatusCode, err)
	}
	if len(data) > limit {
		return nil, fmt.Errorf("response larger than %d bytes (status %d)", limit, resp.StatusCode)
	}
	return &reply{binder: binder, status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// formatWait renders a wait for time.ParseDuration on the server side.
func formatWait(d time.Duration) string {
	return d.Round(time.Millisecond).String()
}

func newAPIError(rep *reply, cl *call) *APIError {
	e := &APIError{Status: rep.status, Binder: rep.binder, Method: cl.method, Path: cl.path, notFound: cl.notFound}
	var body wire.Error
	if err := json.Unmarshal(rep.body, &body); err == nil && body.Error != "" {
		e.Message, e.Code = body.Error, body.Code
		return e
	}
	// Not one of ours (a proxy, or a crash page): keep a readable excerpt.
	msg := strings.TrimSpace(string(rep.body))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg == "" {
		msg = http.StatusText(rep.status)
	}
	e.Message = msg
	return e
}

// decodeReply parses a 2xx body into T.
func decodeReply[T any](rep *reply, cl *call) (T, error) {
	var v T
	if err := json.Unmarshal(rep.body, &v); err != nil {
		return v, fmt.Errorf("client: %s via %s: decode response: %w", cl, rep.binder, err)
	}
	return v, nil
}

// parseIndex reads the X-Lieur-Index header.
func parseIndex(rep *reply) (uint64, error) {
	h := rep.header.Get(wire.HeaderIndex)
	if h == "" {
		return 0, fmt.Errorf("binder %s: response lacks %s header", rep.binder, wire.HeaderIndex)
	}
	n, err := strconv.ParseUint(h, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("binder %s: bad %s header %q: %w", rep.binder, wire.HeaderIndex, h, err)
	}
	return n, nil
}
