package ui_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/ui"
	"github.com/lieur/lieur/transport/wire"
)

func get(t *testing.T, h http.Handler, method, target string, hdr ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(data)
}

// Every file of static/ is served under /ui/ with its content type, the
// page at /ui/ itself, each with the strict Content-Security-Policy.
func TestServesEveryFileWithItsContentTypeAndCSP(t *testing.T) {
	h := ui.New()
	want := map[string]string{
		"/ui/":            "text/html; charset=utf-8",
		"/ui/index.html":  "text/html; charset=utf-8",
		"/ui/app.js":      "text/javascript; charset=utf-8",
		"/ui/api.js":      "text/javascript; charset=utf-8",
		"/ui/services.js": "text/javascript; charset=utf-8",
		"/ui/cluster.js":  "text/javascript; charset=utf-8",
		"/ui/changes.js":  "text/javascript; charset=utf-8",
		"/ui/app.css":     "text/css; charset=utf-8",
		"/ui/favicon.svg": "image/svg+xml",
	}
	for target, ctype := range want {
		resp := get(t, h, "GET", target)
		assert.Equal(t, http.StatusOK, resp.StatusCode, target)
		assert.Equal(t, ctype, resp.Header.Get("Content-Type"), target)
		assert.Equal(t, ui.ContentSecurityPolicy, resp.Header.Get("Content-Security-Policy"), target)
		assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), target)
		assert.NotEmpty(t, resp.Header.Get("ETag"), target)
		assert.NotEmpty(t, body(t, resp), target)
	}
	// Every embedded file is reachable, and each is in the list above or
	// at least has a type (New refuses a file it could not type).
	entries, err := os.ReadDir("static")
	require.NoError(t, err)
	for _, e := range entries {
		resp := get(t, h, "GET", "/ui/"+e.Name())
		assert.Equal(t, http.StatusOK, resp.StatusCode, e.Name())
	}
	// HEAD answers the same headers.
	resp := get(t, h, "HEAD", "/ui/app.js")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/javascript; charset=utf-8", resp.Header.Get("Content-Type"))
}

// The policy allows nothing from elsewhere and no inline code: the page
// talks only to the binder that served it.
func TestContentSecurityPolicyIsStrict(t *testing.T) {
	csp := ui.ContentSecurityPolicy
	for _, d := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"} {
		assert.Contains(t, csp, d)
	}
	assert.NotContains(t, csp, "unsafe-inline")
	assert.NotContains(t, csp, "unsafe-eval")
	assert.NotContains(t, csp, "http")
}

// The files themselves keep to the policy and to "no network access but
// this binder": no inline script, style attribute or handler, no URL of
// another host, no innerHTML (values from the API are text, never markup).
func TestStaticFilesNeedNothingTheCSPForbids(t *testing.T) {
	entries, err := os.ReadDir("static")
	require.NoError(t, err)
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("static", e.Name()))
		require.NoError(t, err)
		src := string(data)
		switch filepath.Ext(e.Name()) {
		case ".html":
			assert.NotRegexp(t, `<script(?:\s[^>]*)?>\s*[^<\s]`, src, "%s: inline script", e.Name())
			assert.Regexp(t, `<script type="module" src="app.js"></script>`, src)
			assert.NotRegexp(t, `\sstyle=`, src, "%s: style attribute", e.Name())
			assert.NotRegexp(t, `\son[a-z]+=`, src, "%s: inline event handler", e.Name())
			assert.NotContains(t, src, "<style", e.Name())
		case ".js":
			for _, bad := range []string{".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
				assert.False(t, strings.Contains(src, bad), "%s uses %s", e.Name(), bad)
			}
			assert.False(t, strings.Contains(src, "localStorage"), "%s: the token lives in sessionStorage only", e.Name())
		}
		if e.Name() != "favicon.svg" { // its xmlns is a name, not a fetch
			assert.Empty(t, external.FindAllString(src, -1), "%s refers to another host", e.Name())
		}
	}
}

func TestRootRedirectsToTheSlash(t *testing.T) {
	h := ui.New()
	resp := get(t, h, "GET", "/ui")
	assert.Equal(t, http.StatusMovedPermanently, resp.StatusCode)
	assert.Equal(t, "/ui/", resp.Header.Get("Location"))
	resp = get(t, h, "GET", "/ui?x=1")
	assert.Equal(t, "/ui/?x=1", resp.Header.Get("Location"))
}

// Unknown files, other methods and paths that are not clean get the API's
// JSON errors.
func TestErrorsAreTheAPIsJSON(t *testing.T) {
	h := ui.New()
	cases := []struct {
		method, target string
		status         int
		msg            string
	}{
		{"GET", "/ui/nope.js", 404, "no such endpoint: GET /ui/nope.js"},
		{"GET", "/ui/static/app.js", 404, "no such endpoint: GET /ui/static/app.js"},
		{"GET", "/ui/../v1/status", 404, "no such endpoint"},
		{"GET", "/ui/./app.js", 404, "no such endpoint"},
		{"GET", "/ui//app.js", 404, "no such endpoint"},
		{"POST", "/ui/", 405, "method POST not allowed on /ui/"},
		{"DELETE", "/ui/app.js", 405, "method DELETE not allowed on /ui/app.js"},
	}
	for _, tc := range cases {
		resp := get(t, h, tc.method, tc.target)
		assert.Equal(t, tc.status, resp.StatusCode, tc.target)
		assert.Equal(t, "application/json", resp.Header.Get("Content-Type"), tc.target)
		assert.Equal(t, ui.ContentSecurityPolicy, resp.Header.Get("Content-Security-Policy"), tc.target)
		var e wire.Error
		require.NoError(t, json.Unmarshal([]byte(body(t, resp)), &e), tc.target)
		assert.Contains(t, e.Error, tc.msg, tc.target)
		if tc.status == 405 {
			assert.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))
		}
	}
}

// An unchanged file is not sent again: the ETag revalidates it.
func TestETagRevalidates(t *testing.T) {
	h := ui.New()
	first := get(t, h, "GET", "/ui/app.js")
	etag := first.Header.Get("ETag")
	require.NotEmpty(t, etag)
	assert.Equal(t, "no-cache", first.Header.Get("Cache-Control"))
	again := get(t, h, "GET", "/ui/app.js", "If-None-Match", etag)
	assert.Equal(t, http.StatusNotModified, again.StatusCode)
	assert.Empty(t, body(t, again))
}

func TestOwns(t *testing.T) {
	for p, want := range map[string]bool{"/ui": true, "/ui/": true, "/ui/app.js": true, "/uix": false, "/v1/ui/": false, "/": false} {
		assert.Equal(t, want, ui.Owns(p), p)
	}
}

// The page's modules import only each other, by relative path.
func TestModulesImportOnlyEachOther(t *testing.T) {
	imp := regexp.MustCompile(`(?m)^import .* from '([^']+)';`)
	entries, err := os.ReadDir("static")
	require.NoError(t, err)
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".js" {
			continue
		}
		data, err := os.ReadFile(filepath.Join("static", e.Name()))
		require.NoError(t, err)
		for _, m := range imp.FindAllStringSubmatch(string(data), -1) {
			assert.True(t, strings.HasPrefix(m[1], "./"), "%s imports %s", e.Name(), m[1])
			_, err := os.Stat(filepath.Join("static", m[1]))
			assert.NoError(t, err, "%s imports %s", e.Name(), m[1])
		}
	}
}
