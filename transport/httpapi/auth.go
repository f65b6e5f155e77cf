package httpapi

import (
	"bufio"
	"crypto/subtle"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/lieur/lieur/fsm"
)

// Role is what a token may do; each role includes the ones below it.
type Role int

// Roles, weakest first. RoleCluster is the binders' own credential, for
// node-to-node calls; it may do everything.
const (
	RoleNone Role = iota
	RoleRead
	RoleRegister
	RoleAdmin
	RoleCluster
)

var roleNames = map[string]Role{"read": RoleRead, "register": RoleRegister, "admin": RoleAdmin, "cluster": RoleCluster}

// Token is one line of a token file.
type Token struct {
	secret []byte
	role   Role
	types  map[string]bool // register tokens bound to types; nil: any
}

// Auth holds a node's tokens. The zero Auth (no tokens) lets everything
// through. Reload replaces the tokens while requests are being checked.
type Auth struct {
	set       atomic.Pointer[tokenSet]
	AuthReads bool // reads need a read token too
}

// tokenSet is one token file's content.
type tokenSet struct {
	tokens []Token
	// cluster are the cluster tokens in file order; the first is the one
	// this binder sends, all are accepted (for rotation).
	cluster []string
}

// ParseTokens reads a token file: one "TOKEN ROLE" pair a line, ROLE one
// of admin, register, read, cluster, or register:TYPE,TYPE to bind a
// register token to service types; '#' starts a comment. At least one
// cluster token is required: binders use it to call each other. The first
// cluster line is the token this binder sends; later ones are accepted
// too, so that a cluster token can be rotated one binder at a time (see
// docs/operations.md).
func ParseTokens(r io.Reader) (*Auth, error) {
	set, err := parseTokenSet(r)
	if err != nil {
		return nil, err
	}
	a := &Auth{}
	a.set.Store(set)
	return a, nil
}

// Reload replaces the tokens with those r holds. On any error the tokens
// in force stay as they were. A file without tokens is refused: it would
// open every endpoint.
func (a *Auth) Reload(r io.Reader) error {
	set, err := parseTokenSet(r)
	if err != nil {
		return err
	}
	if len(set.tokens) == 0 {
		return fmt.Errorf("token file: no tokens (removing every token needs a restart without --token-file)")
	}
	a.set.Store(set)
	return nil
}

func parseTokenSet(r io.Reader) (*tokenSet, error) {
	a := &tokenSet{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("token file line %d: want TOKEN ROLE", line)
		}
		if len(fields[0]) < 16 {
			return nil, fmt.Errorf("token file line %d: a token needs at least 16 characters", line)
		}
		roleName, typeList, bound := strings.Cut(fields[1], ":")
		role, ok := roleNames[roleName]
		if !ok {
			return nil, fmt.Errorf("token file line %d: unknown role %q (admin, register, read, cluster)", line, roleName)
		}
		t := Token{secret: []byte(fields[0]), role: role}
		if bound {
			if role != RoleRegister || typeList == "" {
				return nil, fmt.Errorf("token file line %d: only register tokens bind to types, as register:TYPE,TYPE", line)
			}
			t.types = map[string]bool{}
			for _, typ := range strings.Split(typeList, ",") {
				if err := fsm.ValidateType(typ); err != nil {
					return nil, fmt.Errorf("token file line %d: %v", line, err)
				}
				t.types[typ] = true
			}
			if len(t.types) > fsm.MaxScopeTypes {
				return nil, fmt.Errorf("token file line %d: at most %d types per token", line, fsm.MaxScopeTypes)
			}
		}
		if role == RoleCluster {
			if slices.Contains(a.cluster, fields[0]) {
				return nil, fmt.Errorf("token file line %d: the same cluster token twice", line)
			}
			a.cluster = append(a.cluster, fields[0])
		}
		a.tokens = append(a.tokens, t)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(a.tokens) > 0 && len(a.cluster) == 0 {
		return nil, fmt.Errorf("token file: a line with role cluster is required (binders use it to call each other)")
	}
	return a, nil
}

// ClusterToken is the credential this binder sends to the others: the
// first cluster token of the file.
func (a *Auth) ClusterToken() string {
	if set := a.tokens(); set != nil && len(set.cluster) > 0 {
		return set.cluster[0]
	}
	return ""
}

// tokens is the set in force; nil for a nil or zero Auth.
func (a *Auth) tokens() *tokenSet {
	if a == nil {
		return nil
	}
	return a.set.Load()
}

// enabled says whether requests are checked at all.
func (a *Auth) enabled() bool {
	set := a.tokens()
	return set != nil && len(set.tokens) > 0
}

// identify finds the request's token. Every configured token is compared,
// in constant time, whatever matches, so timing does not tell how much of
// a guess was right.
func (a *Auth) identify(r *http.Request) (*Token, bool) {
	secret := TokenFromHeader(r, "Authorization")
	if secret == "" {
		return nil, false
	}
	return a.lookup(secret), true
}

// lookup returns the configured token equal to secret, nil if none,
// comparing every token in constant time.
func (a *Auth) lookup(secret string) *Token {
	set := a.tokens()
	if set == nil {
		return nil
	}
	var found *Token
	for i := range set.tokens {
		if subtle.ConstantTimeCompare([]byte(secret), set.tokens[i].secret) == 1 {
			found = &set.tokens[i]
		}
	}
	return found
}

// The helpers below let another front door (transport/consul) check the
// same tokens with its own header names and its own error bodies; lieur's
// API itself goes through allow.

// Enabled reports whether tokens are checked at all: false for a nil Auth
// or a token file without tokens.
func (a *Auth) Enabled() bool { return a.enabled() }

// TokenFromHeader returns the token a request carries in the header name,
// "" when it carries none. "Authorization" is read as lieur reads it,
// "Bearer <token>" with the scheme in any case; any other header (such as
// "X-Consul-Token") holds the bare token.
func TokenFromHeader(r *http.Request, name string) string {
	h := r.Header.Get(name)
	if !strings.EqualFold(name, "Authorization") {
		return strings.TrimSpace(h)
	}
	// The scheme is case-insensitive (RFC 9110); the token is not.
	if len(h) < 7 || !strings.EqualFold(h[:7], "Bearer ") {
		return ""
	}
	return strings.TrimSpace(h[7:])
}

// Identify returns the role of the configured token equal to secret and,
// for a register token bound to service types, those types sorted (nil: it
// may act on any type). ok is false when no configured token matches.
// Tokens are compared as for lieur's own API, in constant time.
func (a *Auth) Identify(secret string) (role Role, types []string, ok bool) {
	if a == nil || secret == "" {
		return RoleNone, nil, false
	}
	tok := a.lookup(secret)
	if tok == nil {
		return RoleNone, nil, false
	}
	if tok.role == RoleRegister && tok.types != nil {
		types = make([]string, 0, len(tok.types))
		for t := range tok.types {
			types = append(types, t)
		}
		slices.Sort(types)
	}
	return tok.role, types, true
}

// allow checks that the request carries a token with at least need, and,
// for a register token bound to types, that typ is one of them (typ ""
// skips that check). It answers 401 or 403 itself.
func (a *Auth) allow(w http.ResponseWriter, r *http.Request, need Role, typ string) bool {
	if !a.enabled() || need == RoleNone {
		return true
	}
	tok, sent := a.identify(r)
	if !sent || tok == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="lieur"`)
		msg := "this endpoint needs a token: Authorization: Bearer <token>"
		if sent {
			msg = "unknown token"
		}
		writeError(w, http.StatusUnauthorized, "", msg)
		return false
	}
	if tok.role < need {
		writeError(w, http.StatusForbidden, "", fmt.Sprintf("this token's role may not do this (needs %s)", roleName(need)))
		return false
	}
	if typ != "" && tok.role == RoleRegister && tok.types != nil && !tok.types[typ] {
		writeError(w, http.StatusForbidden, "", fmt.Sprintf("this token may not act on type %q", typ))
		return false
	}
	return true
}

// sameSecret compares in constant time; an empty secret matches nothing.
func sameSecret(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func roleName(r Role) string {
	for k, v := range roleNames {
		if v == r {
			return k
		}
	}
	return "?"
}
