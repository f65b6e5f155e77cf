package httpapi

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseTokens(t *testing.T) {
	good := `# tokens of the cluster
c1c1c1c1c1c1c1c1c1 cluster
a1a1a1a1a1a1a1a1a1 admin   # the operator
r1r1r1r1r1r1r1r1r1 register:echo,time
r2r2r2r2r2r2r2r2r2 register
q1q1q1q1q1q1q1q1q1 read
`
	a, err := ParseTokens(strings.NewReader(good))
	require.NoError(t, err)
	set := a.tokens()
	assert.Len(t, set.tokens, 5)
	assert.Equal(t, "c1c1c1c1c1c1c1c1c1", a.ClusterToken())
	assert.Equal(t, map[string]bool{"echo": true, "time": true}, set.tokens[2].types)
	assert.Nil(t, set.tokens[3].types)

	for name, bad := range map[string]string{
		"no cluster token":        "a1a1a1a1a1a1a1a1a1 admin\n",
		"unknown role":            "c1c1c1c1c1c1c1c1c1 cluster\nx1x1x1x1x1x1x1x1x1 root\n",
		"short token":             "c1c1c1c1c1c1c1c1c1 cluster\nshort admin\n",
		"three fields":            "c1c1c1c1c1c1c1c1c1 cluster extra\n",
		"bound admin":             "c1c1c1c1c1c1c1c1c1 cluster\na1a1a1a1a1a1a1a1a1 admin:echo\n",
		"one cluster token twice": "c1c1c1c1c1c1c1c1c1 cluster\nc1c1c1c1c1c1c1c1c1 cluster\n",
	} {
		_, err := ParseTokens(strings.NewReader(bad))
		assert.Error(t, err, name)
	}
	empty, err := ParseTokens(strings.NewReader("# nothing\n"))
	require.NoError(t, err)
	assert.False(t, empty.enabled(), "no tokens: no checks")
}

// The scheme of an Authorization header is case-insensitive; the token is
// compared exactly.
func TestIdentifyBearer(t *testing.T) {
	a, err := ParseTokens(strings.NewReader("c1c1c1c1c1c1c1c1c1 cluster\na1a1a1a1a1a1a1a1a1 admin\n"))
	require.NoError(t, err)
	for h, want := range map[string]bool{
		"Bearer a1a1a1a1a1a1a1a1a1": true,
		"bearer a1a1a1a1a1a1a1a1a1": true,
		"BEARER a1a1a1a1a1a1a1a1a1": true,
		"Bearer A1A1A1A1A1A1A1A1A1": false,
		"Basic a1a1a1a1a1a1a1a1a1":  false,
		"Bearer ":                   false,
		"":                          false,
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", h)
		tok, _ := a.identify(r)
		assert.Equal(t, want, tok != nil, "%q", h)
	}
}

// A reload swaps every token at once; a file that does not parse, or one
// with no token, leaves the tokens in force as they were.
func TestReloadSwapsTokensOrKeepsTheOld(t *testing.T) {
	a, err := ParseTokens(strings.NewReader("c1c1c1c1c1c1c1c1c1 cluster\nq1q1q1q1q1q1q1q1q1 read\n"))
	require.NoError(t, err)
	role := func(secret string) Role {
		r, _, ok := a.Identify(secret)
		if !ok {
			return RoleNone
		}
		return r
	}
	require.Equal(t, RoleRead, role("q1q1q1q1q1q1q1q1q1"))

	// Rotation of the cluster token: the new one is sent, both accepted.
	require.NoError(t, a.Reload(strings.NewReader("c2c2c2c2c2c2c2c2c2 cluster\nc1c1c1c1c1c1c1c1c1 cluster\nq2q2q2q2q2q2q2q2q2 read\n")))
	assert.Equal(t, "c2c2c2c2c2c2c2c2c2", a.ClusterToken())
	assert.Equal(t, RoleCluster, role("c1c1c1c1c1c1c1c1c1"))
	assert.Equal(t, RoleRead, role("q2q2q2q2q2q2q2q2q2"))
	assert.Equal(t, RoleNone, role("q1q1q1q1q1q1q1q1q1"), "a token no longer in the file is refused")

	for name, bad := range map[string]string{
		"does not parse": "c3c3c3c3c3c3c3c3c3 cluster\nq3q3q3q3q3q3q3q3q3 root\n",
		"no cluster":     "q3q3q3q3q3q3q3q3q3 read\n",
		"empty":          "# all gone\n",
	} {
		assert.Error(t, a.Reload(strings.NewReader(bad)), name)
		assert.Equal(t, "c2c2c2c2c2c2c2c2c2", a.ClusterToken(), name)
		assert.Equal(t, RoleRead, role("q2q2q2q2q2q2q2q2q2"), "%s: the old tokens stay", name)
		assert.Equal(t, RoleNone, role("q3q3q3q3q3q3q3q3q3"), name)
	}
}
