package promsd_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	httpsd "github.com/prometheus/prometheus/discovery/http"
	"github.com/prometheus/prometheus/util/strutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/fsm"
	"github.com/lieur/lieur/transport/httpapi"
	"github.com/lieur/lieur/transport/promsd"
	"github.com/lieur/lieur/transport/wire"
)

// fakeBinder honours the contract of *binder.Node's reads: Services sorted
// by type then id, ServicesOf by id, copies each time.
type fakeBinder struct {
	mu          sync.Mutex
	insts       []fsm.Instance
	index       uint64
	readErr     error
	lastContact time.Duration
}

func (f *fakeBinder) Services() ([]fsm.Instance, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.insts)
	slices.SortFunc(out, func(a, b fsm.Instance) int { return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.ID, b.ID)) })
	return out, f.index
}

func (f *fakeBinder) ServicesOf(typ string) ([]fsm.Instance, uint64) {
	all, idx := f.Services()
	var out []fsm.Instance
	for _, i := range all {
		if i.Type == typ {
			out = append(out, i)
		}
	}
	return out, idx
}

func (f *fakeBinder) ReadAllowed() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.readErr
}

func (f *fakeBinder) LastContact() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastContact
}

func (f *fakeBinder) ID() string { return "n2" }

// table is the instances most tests serve: two types, tags, meta whose
// keys are not label names, every health.
func table() []fsm.Instance {
	return []fsm.Instance{
		{ID: "web-2", Type: "web", Address: "10.0.0.2", Port: 8080, Health: fsm.HealthStaleLease},
		{ID: "web-1", Type: "web", Address: "10.0.0.1", Port: 8080, Tags: []string{"prod", "v1"},
			Meta: map[string]string{"team": "core", "app.version": "1.2", "dc-zone": "a", "été": "x"}},
		{ID: "db-1", Type: "db", Address: "::1", Port: 5432,
			Checks: []fsm.Check{{ID: "c1", Kind: fsm.CheckTCP, Status: fsm.StatusCritical}}},
	}
}

func newServer(t *testing.T, b promsd.Binder, opts ...promsd.Option) http.Handler {
	t.Helper()
	return promsd.NewServer(b, nil, opts...)
}

func do(t *testing.T, h http.Handler, method, target string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func groups(t *testing.T, rec *httptest.ResponseRecorder) []promsd.TargetGroup {
	t.Helper()
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var out []promsd.TargetGroup
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out), rec.Body.String())
	return out
}

// errorOf asserts a JSON error body with that status and returns it.
func errorOf(t *testing.T, rec *httptest.ResponseRecorder, status int) wire.Error {
	t.Helper()
	require.Equal(t, status, rec.Code, rec.Body.String())
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var e wire.Error
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &e), rec.Body.String())
	require.NotEmpty(t, e.Error)
	return e
}

// The answer is Prometheus' target-group array: one group per instance,
// ordered by type then id, its target host:port (IPv6 bracketed), its
// labels the documented __meta_lieur_* set.
func TestTargetGroupsFormat(t *testing.T) {
	h := newServer(t, &fakeBinder{insts: table(), index: 42, lastContact: 1500 * time.Millisecond})
	rec := do(t, h, http.MethodGet, "/v1/sd/prometheus")
	assert.Equal(t, "42", rec.Header().Get(wire.HeaderIndex))
	assert.Equal(t, "1500", rec.Header().Get(wire.HeaderLastContact))
	want := []promsd.TargetGroup{
		{Targets: []string{"[::1]:5432"}, Labels: map[string]string{
			"__meta_lieur_type": "db", "__meta_lieur_id": "db-1", "__meta_lieur_address": "::1", "__meta_lieur_port": "5432",
			"__meta_lieur_health": "critical", "__meta_lieur_tags": ",,", "__meta_lieur_binder": "n2"}},
		{Targets: []string{"10.0.0.1:8080"}, Labels: map[string]string{
			"__meta_lieur_type": "web", "__meta_lieur_id": "web-1", "__meta_lieur_address": "10.0.0.1", "__meta_lieur_port": "8080",
			"__meta_lieur_health": "passing", "__meta_lieur_tags": ",prod,v1,", "__meta_lieur_binder": "n2",
			"__meta_lieur_meta_team": "core", "__meta_lieur_meta_app_version": "1.2", "__meta_lieur_meta_dc_zone": "a",
			"__meta_lieur_meta__t_": "x"}},
		{Targets: []string{"10.0.0.2:8080"}, Labels: map[string]string{
			"__meta_lieur_type": "web", "__meta_lieur_id": "web-2", "__meta_lieur_address": "10.0.0.2", "__meta_lieur_port": "8080",
			"__meta_lieur_health": "warning", "__meta_lieur_tags": ",,", "__meta_lieur_binder": "n2"}},
	}
	assert.Equal(t, want, groups(t, rec))
	legacy := regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	for _, g := range want {
		for name := range g.Labels {
			assert.Regexp(t, legacy, name, "every label name is valid for a Prometheus that validates names the classic way")
		}
	}
}

// Meta keys become label names as Prometheus' own discoveries make them:
// the same function as strutil.SanitizeLabelName, character by character.
func TestSanitizeLabelName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"team", "team"},
		{"Team_2", "Team_2"},
		{"app.version", "app_version"},
		{"dc-zone", "dc_zone"},
		{"a b/c:d", "a_b_c_d"},
		{"2xx", "2xx"}, // prefixed, a leading digit is fine
		{"été", "_t_"}, // one '_' per character, not per byte
		{"日本", "__"},
		{"", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got := promsd.SanitizeLabelName(tc.in)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, strutil.SanitizeLabelName(tc.in), got, "as Prometheus sanitises")
			assert.Regexp(t, `^[a-zA-Z_][a-zA-Z0-9_]*$`, promsd.LabelMetaPrefix+got)
		})
	}
}

// Two meta keys that sanitise to one label name: the key that sorts first
// wins, every time, whatever the map's iteration order.
func TestMetaLabelCollisionIsDeterministic(t *testing.T) {
	inst := fsm.Instance{ID: "a", Type: "web", Address: "10.0.0.1", Port: 1,
		Meta: map[string]string{"a.b": "dot", "a-b": "dash", "a_b": "underscore", "a/b": "slash"}}
	h := newServer(t, &fakeBinder{insts: []fsm.Instance{inst}})
	for i := 0; i < 50; i++ {
		g := groups(t, do(t, h, http.MethodGet, "/v1/sd/prometheus"))
		require.Len(t, g, 1)
		// '-' (0x2d) sorts before '.', '/' and '_'.
		require.Equal(t, "dash", g[0].Labels["__meta_lieur_meta_a_b"], "attempt %d", i)
	}
}

// ?type= narrows the answer to one type; an unknown type and an empty
// table are an empty array with 200, never 404 or null: Prometheus counts
// any other status as a failed refresh.
func TestTypeFilter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		insts  []fsm.Instance
		query  string
		wantID []string
	}{
		{"all types", table(), "", []string{"db-1", "web-1", "web-2"}},
		{"one type", table(), "?type=web", []string{"web-1", "web-2"}},
		{"the other type", table(), "?type=db", []string{"db-1"}},
		{"unknown type", table(), "?type=nosuch", nil},
		{"empty table", nil, "", nil},
		{"empty table, a type", nil, "?type=web", nil},
		// As across lieur's API: parameters an endpoint does not take are
		// ignored (this one never blocks nor asks the leader).
		{"unknown parameters are ignored", table(), "?type=db&foo=bar&consistent=true&index=3&wait=5s&min_index=9", []string{"db-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(t, newServer(t, &fakeBinder{insts: tc.insts}), http.MethodGet, "/v1/sd/prometheus"+tc.query)
			var ids []string
			for _, g := range groups(t, rec) {
				ids = append(ids, g.Labels[promsd.LabelID])
			}
			assert.Equal(t, tc.wantID, ids)
			if tc.wantID == nil {
				assert.Equal(t, "[]\n", rec.Body.String())
			}
		})
	}
}

// A malformed request is a 400 with a JSON error: an invalid type name (by
// the FSM's rules), a repeated type, a stale that is not a boolean.
func TestBadQuery(t *testing.T) {
	h := newServer(t, &fakeBinder{insts: table()})
	for _, q := range []string{
		"?type=",
		"?type=Web",
		"?type=-web",
		"?type=web_1",
		"?type=" + strings.Repeat("a", 64),
		"?type=web&type=db",
		"?stale=maybe",
		"?type=web&stale=yes",
	} {
		t.Run(q, func(t *testing.T) {
			errorOf(t, do(t, h, http.MethodGet, "/v1/sd/prometheus"+q), http.StatusBadRequest)
		})
	}
}

// Only GET and HEAD: other methods are 405 with Allow; HEAD has GET's
// headers and no body. Other paths under /v1/sd/ are JSON 404s.
func TestMethodsAndPaths(t *testing.T) {
	h := newServer(t, &fakeBinder{insts: table()})
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		t.Run(m, func(t *testing.T) {
			rec := do(t, h, m, "/v1/sd/prometheus")
			errorOf(t, rec, http.StatusMethodNotAllowed)
			assert.Equal(t, "GET, HEAD", rec.Header().Get("Allow"))
		})
	}
	t.Run("HEAD", func(t *testing.T) {
		rec := do(t, h, http.MethodHead, "/v1/sd/prometheus")
		assert.Equal(t, http.StatusOK, rec.Code)
		assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	})
	for _, p := range []string{"/v1/sd/", "/v1/sd", "/v1/sd/prometheus/", "/v1/sd/consul", "/v1/sd/prometheus/x", "/v1/sd/../services"} {
		t.Run(p, func(t *testing.T) {
			require.True(t, promsd.Owns(p))
			errorOf(t, do(t, h, http.MethodGet, "http://binder"+p), http.StatusNotFound)
		})
	}
	for _, p := range []string{"/v1/services", "/v1/sdx", "/v1/catalog/services", "/metrics"} {
		assert.False(t, promsd.Owns(p), p)
	}
}

const (
	tokCluster  = "cluster-secret-0123456789"
	tokRead     = "read-only-0123456789"
	tokRegister = "echo-register-0123456789"
)

func tokens(t *testing.T, authReads bool) *httpapi.Auth {
	t.Helper()
	a, err := httpapi.ParseTokens(strings.NewReader(tokCluster + " cluster\n" + tokRead + " read\n" + tokRegister + " register:echo\n"))
	require.NoError(t, err)
	a.AuthReads = authReads
	return a
}

// With a token file and --auth-reads, discovery needs a known token as
// Authorization: Bearer (any role: each includes read), and says so with
// 401; without --auth-reads, or without tokens, it is open, as lieur's
// other reads are.
func TestAuth(t *testing.T) {
	for _, tc := range []struct {
		name   string
		auth   *httpapi.Auth
		header []string
		want   int
	}{
		{"no token file", nil, nil, http.StatusOK},
		{"tokens, reads open", tokens(t, false), nil, http.StatusOK},
		{"auth-reads, no token", tokens(t, true), nil, http.StatusUnauthorized},
		{"auth-reads, unknown token", tokens(t, true), []string{"Authorization", "Bearer not-a-token-0123456789"}, http.StatusUnauthorized},
		{"auth-reads, not bearer", tokens(t, true), []string{"Authorization", "Basic " + tokRead}, http.StatusUnauthorized},
		// What Prometheus sends when authorization has no type: Bearer.
		{"auth-reads, bare token", tokens(t, true), []string{"Authorization", tokRead}, http.StatusUnauthorized},
		{"auth-reads, consul header", tokens(t, true), []string{"X-Consul-Token", tokRead}, http.StatusUnauthorized},
		{"auth-reads, read token", tokens(t, true), []string{"Authorization", "Bearer " + tokRead}, http.StatusOK},
		{"auth-reads, scheme in any case", tokens(t, true), []string{"Authorization", "bearer " + tokRead}, http.StatusOK},
		{"auth-reads, register token", tokens(t, true), []string{"Authorization", "Bearer " + tokRegister}, http.StatusOK},
		{"auth-reads, cluster token", tokens(t, true), []string{"Authorization", "Bearer " + tokCluster}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newServer(t, &fakeBinder{insts: table()}, promsd.WithAuth(tc.auth))
			rec := do(t, h, http.MethodGet, "/v1/sd/prometheus", tc.header...)
			if tc.want == http.StatusOK {
				assert.Len(t, groups(t, rec), 3)
				return
			}
			e := errorOf(t, rec, tc.want)
			assert.Equal(t, `Bearer realm="lieur"`, rec.Header().Get("WWW-Authenticate"))
			assert.NotContains(t, e.Error, tokRead, "the error does not echo a token")
			if len(tc.header) > 0 && tc.header[0] == "Authorization" && !strings.HasPrefix(tc.header[1], "Bearer ") {
				assert.Contains(t, e.Error, "type: Bearer", "a token without the scheme says how to send it")
			}
		})
	}
	t.Run("before the query is looked at", func(t *testing.T) {
		h := newServer(t, &fakeBinder{insts: table()}, promsd.WithAuth(tokens(t, true)))
		errorOf(t, do(t, h, http.MethodGet, "/v1/sd/prometheus?type=BAD"), http.StatusUnauthorized)
	})
}

// A node that refuses default reads (no leader heard from within
// --max-staleness, or catching up after a restart) answers 503 with the
// code lookups give, so that Prometheus keeps the targets it had;
// ?stale=true reads its table anyway.
func TestStaleRefusal(t *testing.T) {
	for _, tc := range []struct {
		name    string
		readErr error
		query   string
		want    int
		code    string
	}{
		{"serving", nil, "", http.StatusOK, ""},
		{"stale", fmt.Errorf("%w for 3s (max staleness 2s)", binder.ErrStale), "", http.StatusServiceUnavailable, wire.CodeStale},
		{"catching up", binder.ErrCatchingUp, "", http.StatusServiceUnavailable, wire.CodeCatchingUp},
		{"stale, stale=false", binder.ErrStale, "?stale=false", http.StatusServiceUnavailable, wire.CodeStale},
		{"stale, stale=true", binder.ErrStale, "?stale=true", http.StatusOK, ""},
		{"catching up, stale=1", binder.ErrCatchingUp, "?stale=1&type=web", http.StatusOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newServer(t, &fakeBinder{insts: table(), readErr: tc.readErr, lastContact: 3 * time.Second})
			rec := do(t, h, http.MethodGet, "/v1/sd/prometheus"+tc.query)
			assert.Equal(t, "3000", rec.Header().Get(wire.HeaderLastContact))
			if tc.want == http.StatusOK {
				assert.NotEmpty(t, groups(t, rec))
				return
			}
			e := errorOf(t, rec, tc.want)
			assert.Equal(t, tc.code, e.Code)
			assert.Contains(t, e.Error, "?stale=true")
		})
	}
	t.Run("never heard from a leader: no last-contact header", func(t *testing.T) {
		h := newServer(t, &fakeBinder{readErr: binder.ErrStale, lastContact: -1})
		rec := do(t, h, http.MethodGet, "/v1/sd/prometheus")
		errorOf(t, rec, http.StatusServiceUnavailable)
		assert.Empty(t, rec.Header().Get(wire.HeaderLastContact))
	})
}

// Prometheus' own HTTP discovery (the library behind http_sd_configs),
// with a bearer token as its authorization setting sends it, accepts the
// answer (status, content type, shape, label names) and finds exactly the
// instances with their labels.
func TestPrometheusHTTPDiscoveryReadsTheAnswer(t *testing.T) {
	fb := &fakeBinder{insts: table()}
	srv := httptest.NewServer(newServer(t, fb, promsd.WithAuth(tokens(t, true))))
	t.Cleanup(srv.Close)

	refresh := func(token string) (map[string]model.LabelSet, error) {
		cfg := httpsd.DefaultSDConfig
		cfg.URL = srv.URL + "/v1/sd/prometheus"
		cfg.RefreshInterval = model.Duration(10 * time.Second)
		if token != "" {
			// type: Bearer, as the documented config says: some versions
			// send the bare credentials without it (prometheus/docs#2377).
			cfg.HTTPClientConfig.Authorization = &promconfig.Authorization{Type: "Bearer", Credentials: promconfig.Secret(token)}
		}
		reg := prometheus.NewRegistry()
		refreshMetrics := discovery.NewRefreshMetrics(reg)
		metrics := cfg.NewDiscovererMetrics(reg, refreshMetrics)
		require.NoError(t, metrics.Register())
		defer metrics.Unregister()
		d, err := httpsd.NewDiscovery(&cfg, discovery.DiscovererOptions{Metrics: metrics})
		require.NoError(t, err)
		tgs, err := d.Refresh(context.Background())
		if err != nil {
			return nil, err
		}
		out := map[string]model.LabelSet{}
		for _, g := range tgs {
			require.Len(t, g.Targets, 1)
			for name := range g.Labels {
				require.True(t, model.LegacyValidation.IsValidLabelName(string(name)), "label name %q", name)
			}
			out[string(g.Targets[0][model.AddressLabel])] = g.Labels
		}
		return out, nil
	}

	_, err := refresh("")
	require.Error(t, err, "without its token Prometheus' refresh fails")
	require.Contains(t, err.Error(), "401")

	got, err := refresh(tokRead)
	require.NoError(t, err)
	require.Len(t, got, 3)
	web1 := got["10.0.0.1:8080"]
	require.NotNil(t, web1, "targets: %v", got)
	assert.Equal(t, model.LabelValue("web-1"), web1["__meta_lieur_id"])
	assert.Equal(t, model.LabelValue(",prod,v1,"), web1["__meta_lieur_tags"])
	assert.Equal(t, model.LabelValue("1.2"), web1["__meta_lieur_meta_app_version"])
	assert.Contains(t, got, "[::1]:5432")
	assert.Contains(t, got, "10.0.0.2:8080")

	fb.mu.Lock()
	fb.insts = nil
	fb.mu.Unlock()
	got, err = refresh(tokRead)
	require.NoError(t, err)
	assert.Empty(t, got, "an empty table is a successful refresh with no targets")
}
