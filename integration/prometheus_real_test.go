//go:build linux

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/wire"
)

// These tests run Debian's real Prometheus server (package prometheus,
// which .ci/run installs), each as its own process with its own config,
// data dir and port: never the package's systemd service.

// prometheusBin is the path of Prometheus' server, or the test is skipped.
func prometheusBin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skipf("skipped: Prometheus' server is not installed here (%v); .ci/run installs Debian's prometheus package", err)
	}
	return bin
}

// promServer is a Prometheus server a test started.
type promServer struct {
	t      *testing.T
	base   string // http://host:port of its API
	client *http.Client
	proc   *bgProcess
}

// startPrometheus writes config into a fresh directory, starts Prometheus
// through start (on the host, or inside a namespace) with that config, a
// data dir beside it and its API on addr, and waits until it is ready.
func startPrometheus(t *testing.T, bin, config, addr string, client *http.Client,
	start func(logPath, name string, args ...string) *bgProcess) *promServer {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(config), 0o644))
	p := &promServer{t: t, base: "http://" + addr, client: client}
	p.proc = start(filepath.Join(dir, "prometheus.log"), bin,
		"--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	waitFor(t, 60*time.Second, "Prometheus ready", func() (bool, string) {
		if p.proc.exited() {
			data, _ := os.ReadFile(p.proc.logPath)
			t.Fatalf("Prometheus exited:\n%s", tail(string(data), 40))
		}
		resp, err := client.Get(p.base + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return p
}

// promTarget is one of /api/v1/targets' active targets.
type promTarget struct {
	DiscoveredLabels map[string]string `json:"discoveredLabels"`
	Labels           map[string]string `json:"labels"`
	ScrapePool       string            `json:"scrapePool"`
}

// targets returns the active targets of one scrape pool (job).
func (p *promServer) targets(pool string) ([]promTarget, error) {
	resp, err := p.client.Get(p.base + "/api/v1/targets?state=active")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Data   struct {
			ActiveTargets []promTarget `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || body.Status != "success" {
		return nil, fmt.Errorf("targets: %s, status %q", resp.Status, body.Status)
	}
	var out []promTarget
	for _, tg := range body.Data.ActiveTargets {
		if tg.ScrapePool == pool {
			out = append(out, tg)
		}
	}
	return out, nil
}

// awaitTargets polls Prometheus until the pool's active targets are
// exactly want: the same set of __address__, and for each, view(target)
// equal to want's labels.
func (p *promServer) awaitTargets(what, pool string, want map[string]map[string]string, view func(promTarget) map[string]string) {
	p.t.Helper()
	waitFor(p.t, 60*time.Second, what, func() (bool, string) {
		tgs, err := p.targets(pool)
		if err != nil {
			return false, err.Error()
		}
		got := map[string]map[string]string{}
		for _, tg := range tgs {
			got[tg.DiscoveredLabels["__address__"]] = view(tg)
		}
		return reflect.DeepEqual(got, want), fmt.Sprintf("\n got: %s\nwant: %s", describeTargets(got), describeTargets(want))
	})
}

func describeTargets(m map[string]map[string]string) string {
	var parts []string
	for addr, labels := range m {
		var ls []string
		for k, v := range labels {
			ls = append(ls, k+"="+v)
		}
		sort.Strings(ls)
		parts = append(parts, addr+" {"+strings.Join(ls, " ")+"}")
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// authedJSON sends a request with a bearer token (and body as JSON, when
// not nil) and decodes the answer as getJSON does.
func authedJSON(method, url, token string, body, out any) (int, error) {
	var rd *bytes.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(data)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, err
	}
	return decode(resp, out)
}

// Debian's Prometheus with two http_sd_configs jobs pointed at a binder of
// a 3-node cluster that requires a read token (--auth-reads), which the
// jobs send as http_sd_configs' authorization: the one job's targets are
// exactly the registered instances, the other's (?type=web) exactly one
// type's, each with the documented __meta_lieur_* labels (tags in Consul's
// ",a,b," form, meta keys sanitised into label names, health), usable by
// relabeling; both follow a registration and a removal.
func TestPrometheusHTTPSDFollowsTheTable(t *testing.T) {
	bin := prometheusBin(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "tokens")
	require.NoError(t, os.WriteFile(tokenFile, []byte(tokCluster+" cluster\n"+tokRegister+" register\n"+tokRead+" read\n"), 0o600))
	readTokenFile := filepath.Join(dir, "read-token")
	require.NoError(t, os.WriteFile(readTokenFile, []byte(tokRead+"\n"), 0o600))

	c := newCluster(t, 3, "--token-file", tokenFile, "--auth-reads")
	for i := range c.nodes {
		c.startPeers(i, c.peers())
	}
	// The harness' readiness checks read without a token: wait with one.
	waitFor(t, 30*time.Second, "cluster ready (log format 3: tags and checks)", func() (bool, string) {
		leader := ""
		for _, n := range c.nodes {
			var st wire.Status
			if code, err := authedJSON(http.MethodGet, n.url()+"/v1/status", tokRead, nil, &st); code != http.StatusOK {
				return false, fmt.Sprintf("%s: status %d %v", n.id, code, err)
			}
			if st.Leader == "" || (leader != "" && st.Leader != leader) || !st.CaughtUp || st.LogFormat < 3 {
				return false, fmt.Sprintf("%s: leader %q, caught up %v, log format %d", n.id, st.Leader, st.CaughtUp, st.LogFormat)
			}
			leader = st.Leader
		}
		return true, ""
	})
	// Discovery must actually require the token.
	code, err := getJSON(c.nodes[2].url()+"/v1/sd/prometheus", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, code, "discovery without a token under --auth-reads")

	ports := freePorts(t, 4) // targets need not answer: only discovery matters
	addr := func(host string, k int) string { return fmt.Sprintf("%s:%d", host, ports[k]) }
	register := func(node int, req wire.RegisterRequest) {
		t.Helper()
		code, err := authedJSON(http.MethodPost, c.nodes[node].url()+"/v1/services", tokRegister, req, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code, "register %s", req.ID)
	}
	// web-1 through Consul's API (tags, and a check that says warning),
	// the others through lieur's own.
	consul, err := consulapi.NewClient(&consulapi.Config{Address: c.nodes[0].httpAddr, Token: tokRegister})
	require.NoError(t, err)
	require.NoError(t, consul.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{ID: "web-1", Name: "web",
		Address: "127.0.0.1", Port: ports[0], Tags: []string{"prod", "v1"}, Meta: map[string]string{"app.version": "1.2", "team": "core"},
		Check: &consulapi.AgentServiceCheck{TTL: "10m", Status: "warning"}}))
	register(1, wire.RegisterRequest{ID: "web-2", Type: "web", Address: "127.0.0.1", Port: ports[1], Meta: map[string]string{"team.name": "edge"}})
	register(0, wire.RegisterRequest{ID: "db-1", Type: "db", Address: "127.0.0.2", Port: ports[2]})

	base := func(id, typ, host string, k int, health, tags string) map[string]string {
		return map[string]string{"__meta_lieur_id": id, "__meta_lieur_type": typ, "__meta_lieur_address": host,
			"__meta_lieur_port": fmt.Sprint(ports[k]), "__meta_lieur_health": health, "__meta_lieur_tags": tags,
			"__meta_lieur_binder": "n3", "label:instance": addr(host, k), "label:lieur_id": id}
	}
	web1 := base("web-1", "web", "127.0.0.1", 0, "warning", ",prod,v1,")
	web1["__meta_lieur_meta_app_version"], web1["__meta_lieur_meta_team"] = "1.2", "core"
	web1["label:version"], web1["label:env"] = "1.2", "production" // relabeled from meta and from a tag regex
	web2 := base("web-2", "web", "127.0.0.1", 1, "passing", ",,")
	web2["__meta_lieur_meta_team_name"] = "edge"
	db1 := base("db-1", "db", "127.0.0.2", 2, "passing", ",,")
	web3 := base("web-3", "web", "127.0.0.3", 3, "passing", ",,")

	sdURL := c.nodes[2].url() + "/v1/sd/prometheus"
	config := fmt.Sprintf(`global:
  scrape_interval: 1h
scrape_configs:
  - job_name: lieur-all
    http_sd_configs:
      - url: %[1]s
        refresh_interval: 1s
        authorization:
          type: Bearer # Prometheus 2.42 sends the bare token without it
          credentials_file: %[2]s
    relabel_configs:
      - source_labels: [__meta_lieur_id]
        target_label: lieur_id
      - source_labels: [__meta_lieur_meta_app_version]
        regex: (.+)
        target_label: version
      - source_labels: [__meta_lieur_tags]
        regex: .*,prod,.*
        target_label: env
        replacement: production
  - job_name: lieur-web
    http_sd_configs:
      - url: %[1]s?type=web
        refresh_interval: 1s
        authorization:
          type: Bearer # Prometheus 2.42 sends the bare token without it
          credentials_file: %[2]s
    relabel_configs:
      - source_labels: [__meta_lieur_id]
        target_label: lieur_id
`, sdURL, readTokenFile)
	promAddr := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0])
	prom := startPrometheus(t, bin, config, promAddr, httpc, func(logPath, name string, args ...string) *bgProcess {
		return startProcess(t, logPath, exec.Command(name, args...))
	})

	// The view of a target compared: its __meta_lieur_* labels as
	// discovered, and the labels relabeling made of them.
	view := func(tg promTarget) map[string]string {
		out := map[string]string{}
		for k, v := range tg.DiscoveredLabels {
			if strings.HasPrefix(k, "__meta_lieur_") {
				out[k] = v
			}
		}
		for _, k := range []string{"instance", "lieur_id", "version", "env"} {
			if v, ok := tg.Labels[k]; ok {
				out["label:"+k] = v
			}
		}
		return out
	}
	webOnly := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			if k != "label:version" && k != "label:env" { // the web job does not relabel those
				out[k] = v
			}
		}
		return out
	}

	start := time.Now()
	prom.awaitTargets("every instance, in the all-types job", "lieur-all",
		map[string]map[string]string{addr("127.0.0.1", 0): web1, addr("127.0.0.1", 1): web2, addr("127.0.0.2", 2): db1}, view)
	prom.awaitTargets("the web instances, in the ?type=web job", "lieur-web",
		map[string]map[string]string{addr("127.0.0.1", 0): webOnly(web1), addr("127.0.0.1", 1): webOnly(web2)}, view)
	t.Logf("initial targets discovered in %s", time.Since(start).Round(10*time.Millisecond))

	start = time.Now()
	register(1, wire.RegisterRequest{ID: "web-3", Type: "web", Address: "127.0.0.3", Port: ports[3]})
	prom.awaitTargets("the new instance, in the all-types job", "lieur-all",
		map[string]map[string]string{addr("127.0.0.1", 0): web1, addr("127.0.0.1", 1): web2, addr("127.0.0.2", 2): db1, addr("127.0.0.3", 3): web3}, view)
	prom.awaitTargets("the new instance, in the ?type=web job", "lieur-web",
		map[string]map[string]string{addr("127.0.0.1", 0): webOnly(web1), addr("127.0.0.1", 1): webOnly(web2), addr("127.0.0.3", 3): webOnly(web3)}, view)
	t.Logf("registration followed in %s", time.Since(start).Round(10*time.Millisecond))

	start = time.Now()
	code, err = authedJSON(http.MethodDelete, c.nodes[0].url()+"/v1/services/web-1", tokRegister, nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	prom.awaitTargets("the removal, in the all-types job", "lieur-all",
		map[string]map[string]string{addr("127.0.0.1", 1): web2, addr("127.0.0.2", 2): db1, addr("127.0.0.3", 3): web3}, view)
	prom.awaitTargets("the removal, in the ?type=web job", "lieur-web",
		map[string]map[string]string{addr("127.0.0.1", 1): webOnly(web2), addr("127.0.0.3", 3): webOnly(web3)}, view)
	t.Logf("removal followed in %s", time.Since(start).Round(10*time.Millisecond))
}

// Debian's Prometheus with a dns_sd_configs SRV job, which reads
// /etc/resolv.conf and can be given no port: in a network namespace of its
// own, whose resolv.conf names the DNS front doors of a 3-node cluster on
// 127.0.0.1-3:53, everything started with `ip netns exec`. Its targets
// are exactly the type's registered instances (as SRV targets
// <hex IP>.addr.lieur:port), registered and removed with the lieur CLI
// inside the namespace, and follow a registration and a removal.
func TestPrometheusDNSSDInNetns(t *testing.T) {
	bin := prometheusBin(t)
	ns := newNetns(t)
	ns.WriteEtc("resolv.conf", "nameserver 127.0.0.1\nnameserver 127.0.0.2\nnameserver 127.0.0.3\n")
	dir := t.TempDir()

	// In a namespace of its own every port is free: fixed ones, one
	// loopback address per binder (all of 127/8 is on lo).
	var peers, binders []string
	for k := 1; k <= 3; k++ {
		peers = append(peers, fmt.Sprintf("n%d=127.0.0.%d:7000", k, k))
		binders = append(binders, fmt.Sprintf("http://127.0.0.%d:8000", k))
	}
	var agents []*bgProcess
	for k := 1; k <= 3; k++ {
		id := fmt.Sprintf("n%d", k)
		args := append([]string{"agent", "--id", id, "--raft-addr", fmt.Sprintf("127.0.0.%d:7000", k),
			"--http-addr", fmt.Sprintf("127.0.0.%d:8000", k), "--data-dir", filepath.Join(dir, id),
			"--peers", strings.Join(peers, ","), "--dns-addr", fmt.Sprintf("127.0.0.%d:53", k)}, fastFlags...)
		agents = append(agents, ns.Start(filepath.Join(dir, id+".log"), lieurBin, args...))
	}
	client := ns.HTTPClient()
	waitFor(t, 30*time.Second, "the cluster in the namespace ready", func() (bool, string) {
		leader := ""
		for k, b := range binders {
			if agents[k].exited() {
				t.Fatalf("n%d exited", k+1)
			}
			resp, err := client.Get(b + "/v1/status")
			if err != nil {
				return false, err.Error()
			}
			var st wire.Status
			if code, err := decode(resp, &st); code != http.StatusOK {
				return false, fmt.Sprintf("n%d: status %d %v", k+1, code, err)
			}
			if st.Leader == "" || (leader != "" && st.Leader != leader) || !st.CaughtUp {
				return false, fmt.Sprintf("n%d: leader %q, caught up %v", k+1, st.Leader, st.CaughtUp)
			}
			leader = st.Leader
		}
		return true, ""
	})
	lieur := func(args ...string) {
		t.Helper()
		ns.Run(lieurBin, append(args, "--binders", strings.Join(binders, ","))...)
	}
	lieur("register", "--type", "echo", "--address", "10.0.0.1", "--port", "9101", "--id", "echo-1")
	lieur("register", "--type", "echo", "--address", "10.0.0.2", "--port", "9102", "--id", "echo-2")
	lieur("register", "--type", "web", "--address", "10.0.0.9", "--port", "80", "--id", "web-1") // another type

	config := `global:
  scrape_interval: 1h
scrape_configs:
  - job_name: lieur-dns
    dns_sd_configs:
      - names: ['_echo._tcp.service.lieur']
        type: SRV
        refresh_interval: 1s
`
	prom := startPrometheus(t, bin, config, "127.0.0.1:9090", client, ns.Start)
	view := func(tg promTarget) map[string]string {
		return map[string]string{"__meta_dns_name": tg.DiscoveredLabels["__meta_dns_name"]}
	}
	named := map[string]string{"__meta_dns_name": "_echo._tcp.service.lieur"} // the name as configured

	start := time.Now()
	prom.awaitTargets("the echo instances", "lieur-dns",
		map[string]map[string]string{"0a000001.addr.lieur:9101": named, "0a000002.addr.lieur:9102": named}, view)
	t.Logf("initial targets discovered in %s", time.Since(start).Round(10*time.Millisecond))

	start = time.Now()
	lieur("register", "--type", "echo", "--address", "10.0.0.3", "--port", "9103", "--id", "echo-3")
	prom.awaitTargets("the new instance", "lieur-dns", map[string]map[string]string{
		"0a000001.addr.lieur:9101": named, "0a000002.addr.lieur:9102": named, "0a000003.addr.lieur:9103": named}, view)
	t.Logf("registration followed in %s", time.Since(start).Round(10*time.Millisecond))

	start = time.Now()
	lieur("deregister", "echo-1")
	prom.awaitTargets("the removal", "lieur-dns", map[string]map[string]string{
		"0a000002.addr.lieur:9102": named, "0a000003.addr.lieur:9103": named}, view)
	t.Logf("removal followed in %s", time.Since(start).Round(10*time.Millisecond))
}
