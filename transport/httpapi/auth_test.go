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
	assert.Len(t, a.tokens, 5)
	assert.Equal(t, "c1c1c1c1c1c1c1c1c1", a.ClusterToken())
	assert.Equal(t, map[string]bool{"echo": true, "time": true}, a.tokens[2].types)
	assert.Nil(t, a.tokens[3].types)

	for name, bad := range map[string]string{
		"no cluster token":   "a1a1a1a1a1a1a1a1a1 admin\n",
		"unknown role":       "c1c1c1c1c1c1c1c1c1 cluster\nx1x1x1x1x1x1x1x1x1 root\n",
		"short token":        "c1c1c1c1c1c1c1c1c1 cluster\nshort admin\n",
		"three fields":       "c1c1c1c1c1c1c1c1c1 cluster extra\n",
		"bound admin":        "c1c1c1c1c1c1c1c1c1 cluster\na1a1a1a1a1a1a1a1a1 admin:echo\n",
		"two cluster tokens": "c1c1c1c1c1c1c1c1c1 cluster\nc2c2c2c2c2c2c2c2c2 cluster\n",
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
