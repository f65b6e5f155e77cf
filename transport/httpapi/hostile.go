package httpapi

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Limits against hostile or runaway clients.
const (
	// MaxWaiters bounds the requests of one node waiting at once (lookups
	// with ?wait= and blocking queries); beyond it they get 429.
	MaxWaiters = 4096
	// ReportRate and ReportBurst bound the down-reports one client address
	// may send: each makes the binder dial out.
	ReportRate  = 50 // per second
	ReportBurst = 100
	// MaxVerifying bounds the reports of one node being answered at once.
	MaxVerifying = 256
)

// errDuplicateKey is returned for a JSON object that names a key twice:
// encoding/json would keep the last silently.
var errDuplicateKey = errors.New("duplicate key")

// checkJSON walks a JSON document and refuses one whose objects repeat a
// key. It does not validate anything else; the decoder does (on a
// document it cannot follow it returns nil).
//
// It scans the bytes instead of walking encoding/json's tokens: every
// body of a write is checked, forwarded batches of up to 256 commands
// too, and the token walk (an allocation per token, a map per object) was
// a tenth of a leader's CPU under write load. Keys are compared as
// encoding/json decodes them: a key with an escape or a byte outside
// ASCII is decoded first (so "a" and "\u0061" are the same key).
func checkJSON(data []byte) error {
	type frame struct {
		object bool
		first  int                 // this object's keys are keys[first:]
		set    map[string]struct{} // instead, once it has many
	}
	var stackBuf [8]frame
	var keysBuf [32][]byte
	stack, keys := stackBuf[:0], keysBuf[:0]
	var prev byte // the last structural byte: '{', '[', ',', ':' or 0
	for i := 0; i < len(data); {
		c := data[i]
		switch c {
		case ' ', '\t', '\n', '\r':
			i++
			continue
		case '{', '[':
			stack = append(stack, frame{object: c == '{', first: len(keys)})
			prev = c
			i++
			continue
		case '}', ']':
			if len(stack) == 0 {
				return nil
			}
			keys = keys[:stack[len(stack)-1].first]
			stack = stack[:len(stack)-1]
			prev = 0
			i++
			continue
		case ',', ':':
			prev = c
			i++
			continue
		case '"':
			end, escaped := scanJSONString(data, i)
			if end < 0 {
				return nil
			}
			top := len(stack) - 1
			if top >= 0 && stack[top].object && (prev == '{' || prev == ',') {
				key := data[i+1 : end-1]
				if escaped {
					var s string
					if json.Unmarshal(data[i:end], &s) != nil {
						return nil
					}
					key = []byte(s)
				}
				f := &stack[top]
				if f.set != nil {
					if _, dup := f.set[string(key)]; dup {
						return fmt.Errorf("%w %q", errDuplicateKey, key)
					}
					f.set[string(key)] = struct{}{}
				} else {
					for _, k := range keys[f.first:] {
						if bytes.Equal(k, key) {
							return fmt.Errorf("%w %q", errDuplicateKey, key)
						}
					}
					keys = append(keys, key)
					if len(keys)-f.first > 16 {
						f.set = make(map[string]struct{}, 32)
						for _, k := range keys[f.first:] {
							f.set[string(k)] = struct{}{}
						}
						keys = keys[:f.first]
					}
				}
			}
			prev = 0
			i = end
			continue
		default:
			// A number, true, false or null: up to the next delimiter.
			for i < len(data) && !isJSONDelim(data[i]) {
				i++
			}
			prev = 0
		}
	}
	return nil
}

// scanJSONString returns the index just past the string that starts at
// data[start] (a quote), or -1 if it does not end, and whether it holds
// an escape or a byte outside ASCII (its decoded form may differ from its
// bytes).
func scanJSONString(data []byte, start int) (end int, escaped bool) {
	for i := start + 1; i < len(data); i++ {
		switch c := data[i]; {
		case c == '"':
			return i + 1, escaped
		case c == '\\':
			escaped = true
			i++ // the escaped byte; a \u escape's hex digits need no care
		case c >= 0x80:
			escaped = true
		}
	}
	return -1, escaped
}

func isJSONDelim(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', ',', ':', '{', '}', '[', ']', '"':
		return true
	}
	return false
}

// requestID names a request in logs, for a 500 a client can quote.
func requestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// limiter is a token bucket per client address.
type limiter struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	rate    float64
	burst   float64
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate, burst float64) *limiter {
	return &limiter{buckets: map[string]*bucket{}, rate: rate, burst: burst}
}

// allow takes a token for addr, or says how long until one is available.
func (l *limiter) allow(addr string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buckets) > 100000 {
		// Forget idle clients rather than grow without bound.
		for k, b := range l.buckets {
			if now.Sub(b.last) > time.Minute {
				delete(l.buckets, k)
			}
		}
	}
	b := l.buckets[addr]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[addr] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func tooMany(w http.ResponseWriter, retry time.Duration, msg string) {
	secs := int(retry/time.Second) + 1
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusTooManyRequests, "", msg)
}
