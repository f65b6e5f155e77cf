package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/lieur/lieur/transport/wire"
)

// benchConfig is what every `lieur bench` mode takes.
type benchConfig struct {
	binders  []string
	target   string // lieur, etcd (native gRPC client) or etcd-gateway
	clients  int
	duration time.Duration
	count    int
	typ      string
	ratio    float64
	json     bool
}

// benchResult is one run's figures.
type benchResult struct {
	Target   string  `json:"target"`
	Mode     string  `json:"mode"`
	Clients  int     `json:"clients"`
	Ops      int64   `json:"ops"`
	Errors   int64   `json:"errors"`
	Seconds  float64 `json:"seconds"`
	OpsPerS  float64 `json:"ops_per_s"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	P999Ms   float64 `json:"p999_ms"`
	Lookups  int64   `json:"lookups,omitempty"`
	Writes   int64   `json:"writes,omitempty"`
	Verdicts string  `json:"verdicts,omitempty"`
}

func (r benchResult) String() string {
	return fmt.Sprintf("%s %s clients=%d ops=%d errors=%d in %.1fs: %.0f ops/s  p50=%.2fms p99=%.2fms p999=%.2fms",
		r.Target, r.Mode, r.Clients, r.Ops, r.Errors, r.Seconds, r.OpsPerS, r.P50Ms, r.P99Ms, r.P999Ms)
}

// op is one request of a workload; worker is the client's index.
type op func(ctx context.Context, hc *http.Client, worker, seq int) error

// runLoad runs op from cfg.clients workers, each with its own keep-alive
// connection, until the duration passes or count operations are done.
func runLoad(ctx context.Context, cfg benchConfig, mode string, do op) benchResult {
	var (
		next    atomic.Int64
		errs    atomic.Int64
		mu      sync.Mutex
		samples []time.Duration
		wg      sync.WaitGroup
	)
	deadline := time.Now().Add(cfg.duration)
	start := time.Now()
	for w := 0; w < cfg.clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1, DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}}
			defer hc.CloseIdleConnections()
			local := make([]time.Duration, 0, 4096)
			for ctx.Err() == nil {
				seq := int(next.Add(1) - 1)
				if cfg.count > 0 && seq >= cfg.count {
					break
				}
				if cfg.count == 0 && time.Now().After(deadline) {
					break
				}
				t0 := time.Now()
				if err := do(ctx, hc, w, seq); err != nil {
					errs.Add(1)
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			samples = append(samples, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	pct := func(p float64) float64 {
		if len(samples) == 0 {
			return 0
		}
		i := int(p * float64(len(samples)-1))
		return float64(samples[i]) / float64(time.Millisecond)
	}
	return benchResult{
		Target: cfg.target, Mode: mode, Clients: cfg.clients, Ops: int64(len(samples)), Errors: errs.Load(),
		Seconds: elapsed.Seconds(), OpsPerS: float64(len(samples)) / elapsed.Seconds(),
		P50Ms: pct(0.50), P99Ms: pct(0.99), P999Ms: pct(0.999),
	}
}

func send(ctx context.Context, hc *http.Client, method, url string, body any, want int) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return data, fmt.Errorf("%s %s: status %d: %s", method, url, resp.StatusCode, bytes.TrimSpace(data))
	}
	return data, nil
}

// workload is how one target performs the operations being compared.
// Worker w is one client: it talks to node w mod the number of nodes,
// over its own connection (hc for HTTP targets).
type workload interface {
	setup(ctx context.Context, typ string) error
	register(ctx context.Context, hc *http.Client, w int, typ string, seq int) error
	lookup(ctx context.Context, hc *http.Client, w int, typ string) error
	close()
}

// lieurLoad: registration = POST /v1/services; lookup = GET /v1/lookup.
type lieurLoad struct{ binders []string }

func (l lieurLoad) base(w int) string { return l.binders[w%len(l.binders)] }
func (l lieurLoad) close()            {}

func (l lieurLoad) setup(ctx context.Context, typ string) error {
	hc := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < 3; i++ {
		body := wire.RegisterRequest{Type: typ, Address: "127.0.0.1", Port: 40000 + i}
		if _, err := send(ctx, hc, "POST", l.binders[0]+"/v1/services", body, 200); err != nil {
			return err
		}
	}
	// Every binder must serve the instances before the clock starts.
	for _, b := range l.binders {
		for {
			if _, err := send(ctx, hc, "GET", b+"/v1/lookup/"+typ, nil, 200); err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

var benchRun = fmt.Sprintf("%x", rand.Uint32())

func (l lieurLoad) register(ctx context.Context, hc *http.Client, w int, typ string, seq int) error {
	body := wire.RegisterRequest{ID: fmt.Sprintf("bench-%s-%d", benchRun, seq), Type: typ, Address: "127.0.0.1", Port: 1 + seq%65535}
	_, err := send(ctx, hc, "POST", l.base(w)+"/v1/services", body, 200)
	return err
}

func (l lieurLoad) lookup(ctx context.Context, hc *http.Client, w int, typ string) error {
	_, err := send(ctx, hc, "GET", l.base(w)+"/v1/lookup/"+typ, nil, 200)
	return err
}

// etcdLoad speaks etcd's v3 JSON gateway: registration = a put of
// /services/<type>/<id> with a small JSON value; lookup = a serializable
// range over the /services/<type>/ prefix holding 3 instances. The
// native gRPC client (etcdNativeLoad, bench_etcd.go) is what etcd's users
// run; the gateway is kept for comparison (--target etcd-gateway).
type etcdLoad struct{ endpoints []string }

func (e etcdLoad) close() {}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func (e etcdLoad) put(ctx context.Context, hc *http.Client, base, key, value string) error {
	_, err := send(ctx, hc, "POST", base+"/v3/kv/put", map[string]string{"key": b64(key), "value": b64(value)}, 200)
	return err
}

func (e etcdLoad) setup(ctx context.Context, typ string) error {
	hc := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < 3; i++ {
		id := fmt.Sprintf("%s-%d", typ, i)
		if err := e.put(ctx, hc, e.endpoints[0], "/services/"+typ+"/"+id, etcdValue(id, typ, 40000+i)); err != nil {
			return err
		}
	}
	return nil
}

// etcdValue is the value a registration puts under /services/<type>/<id>.
func etcdValue(id, typ string, port int) string {
	return fmt.Sprintf(`{"id":"%s","type":"%s","address":"127.0.0.1","port":%d}`, id, typ, port)
}

func (e etcdLoad) register(ctx context.Context, hc *http.Client, w int, typ string, seq int) error {
	id := fmt.Sprintf("bench-%s-%d", benchRun, seq)
	return e.put(ctx, hc, e.endpoints[w%len(e.endpoints)], "/services/"+typ+"/"+id, etcdValue(id, typ, 1+seq%65535))
}

func (e etcdLoad) lookup(ctx context.Context, hc *http.Client, w int, typ string) error {
	base := e.endpoints[w%len(e.endpoints)]
	prefix := "/services/" + typ + "/"
	end := prefix[:len(prefix)-1] + string(rune(prefix[len(prefix)-1]+1))
	data, err := send(ctx, hc, "POST", base+"/v3/kv/range", map[string]any{"key": b64(prefix), "range_end": b64(end), "serializable": true}, 200)
	if err != nil {
		return err
	}
	var resp struct {
		Count string `json:"count"`
	}
	if err := json.Unmarshal(data, &resp); err != nil || resp.Count != "3" {
		return fmt.Errorf("etcd range returned %s", data)
	}
	return nil
}

func (cfg benchConfig) load() (workload, error) {
	switch cfg.target {
	case "etcd":
		return newEtcdNativeLoad(cfg.binders, cfg.clients, false)
	case "etcd-shared":
		return newEtcdNativeLoad(cfg.binders, cfg.clients, true)
	case "etcd-gateway":
		return etcdLoad{endpoints: cfg.binders}, nil
	case "lieur":
		return lieurLoad{binders: cfg.binders}, nil
	}
	return nil, fmt.Errorf("--target %q: want lieur, etcd, etcd-shared or etcd-gateway", cfg.target)
}

// runBench runs one mode against cfg.binders.
func runBench(ctx context.Context, cfg benchConfig, mode string) (benchResult, error) {
	base := func(worker int) string { return cfg.binders[worker%len(cfg.binders)] }
	etcdMode := mode == "lookup" || mode == "register" || mode == "mixed"
	if cfg.target != "lieur" && !etcdMode {
		return benchResult{}, fmt.Errorf("%s: only lookup, register and mixed run against %s", mode, cfg.target)
	}
	var wl workload
	if etcdMode {
		var err error
		if wl, err = cfg.load(); err != nil {
			return benchResult{}, err
		}
		defer wl.close()
	}
	switch mode {
	case "lookup":
		cfg.count = 0
		if err := wl.setup(ctx, cfg.typ); err != nil {
			return benchResult{}, fmt.Errorf("setup: %w", err)
		}
		return runLoad(ctx, cfg, mode, func(ctx context.Context, hc *http.Client, w, _ int) error {
			return wl.lookup(ctx, hc, w, cfg.typ)
		}), nil
	case "register":
		return runLoad(ctx, cfg, mode, func(ctx context.Context, hc *http.Client, w, seq int) error {
			return wl.register(ctx, hc, w, cfg.typ+"-w", seq)
		}), nil
	case "mixed":
		cfg.count = 0
		if err := wl.setup(ctx, cfg.typ); err != nil {
			return benchResult{}, fmt.Errorf("setup: %w", err)
		}
		var lookups, writes atomic.Int64
		res := runLoad(ctx, cfg, mode, func(ctx context.Context, hc *http.Client, w, seq int) error {
			if rand.Float64() < cfg.ratio {
				lookups.Add(1)
				return wl.lookup(ctx, hc, w, cfg.typ)
			}
			writes.Add(1)
			return wl.register(ctx, hc, w, cfg.typ+"-w", seq)
		})
		res.Lookups, res.Writes = lookups.Load(), writes.Load()
		return res, nil
	case "report":
		return benchReports(ctx, cfg)
	case "ceiling":
		return benchCeiling(ctx, cfg)
	case "watchers":
		return benchWatchers(ctx, cfg, false)
	case "consul-watchers":
		return benchWatchers(ctx, cfg, true)
	case "consul-health":
		cfg.count = 0
		if err := (lieurLoad{binders: cfg.binders}).setup(ctx, cfg.typ); err != nil {
			return benchResult{}, fmt.Errorf("setup: %w", err)
		}
		return runLoad(ctx, cfg, mode, func(ctx context.Context, hc *http.Client, w, _ int) error {
			_, err := send(ctx, hc, "GET", base(w)+"/v1/health/service/"+cfg.typ, nil, 200)
			return err
		}), nil
	case "consul-register":
		return runLoad(ctx, cfg, mode, func(ctx context.Context, hc *http.Client, w, seq int) error {
			id := fmt.Sprintf("creg-%s-%d", benchRun, seq)
			body := map[string]any{"ID": id, "Name": cfg.typ + "-c", "Address": "127.0.0.1", "Port": 1 + seq%65535, "Tags": []string{"bench"},
				"Check": map[string]any{"CheckID": "service:" + id, "TTL": "30s", "Status": "passing"}}
			_, err := send(ctx, hc, "PUT", base(w)+"/v1/agent/service/register", body, 200)
			return err
		}), nil
	}
	return benchResult{}, fmt.Errorf("unknown mode %q: want lookup, register, mixed, report, ceiling, watchers, consul-health, consul-register or consul-watchers", mode)
}

// benchReports registers instances of a live server and of dead ports,
// then reports each: live ones must stay, dead ones go.
func benchReports(ctx context.Context, cfg benchConfig) (benchResult, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return benchResult{}, err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	live := ln.Addr().(*net.TCPAddr).Port
	dl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return benchResult{}, err
	}
	dead := dl.Addr().(*net.TCPAddr).Port
	dl.Close() // nothing listens there any more
	hc := &http.Client{Timeout: 10 * time.Second}
	n := cfg.count
	ids := make([]string, n)
	for i := 0; i < n; i++ {
		port := live
		if i%2 == 1 {
			port = dead
		}
		ids[i] = fmt.Sprintf("report-%s-%d", benchRun, i)
		body := wire.RegisterRequest{ID: ids[i], Type: cfg.typ + "-r", Address: "127.0.0.1", Port: port}
		if _, err := send(ctx, hc, "POST", cfg.binders[0]+"/v1/services", body, 200); err != nil {
			return benchResult{}, fmt.Errorf("setup: %w", err)
		}
	}
	var alive, removed, other atomic.Int64
	res := runLoad(ctx, cfg, "report", func(ctx context.Context, hc *http.Client, w, seq int) error {
		data, err := send(ctx, hc, "POST", cfg.binders[w%len(cfg.binders)]+"/v1/reports?min_index=0", wire.ReportRequest{ID: ids[seq]}, 200)
		if err != nil {
			return err
		}
		var rr wire.ReportResponse
		_ = json.Unmarshal(data, &rr)
		switch rr.Verdict {
		case wire.VerdictAlive:
			alive.Add(1)
		case wire.VerdictRemoved:
			removed.Add(1)
		default:
			other.Add(1)
		}
		return nil
	})
	res.Verdicts = fmt.Sprintf("alive=%d removed=%d unknown=%d", alive.Load(), removed.Load(), other.Load())
	return res, nil
}

// ceilingBody is a fixed 90-byte JSON answer, the size of a lookup's.
var ceilingBody = []byte(`{"id":"echo-127.0.0.1-12347","type":"echo","address":"127.0.0.1","port":12347,"meta":{}}` + "\n")

// benchCeiling measures a bare net/http handler returning a fixed body,
// with the load generator in the same process: roughly the most any
// lookup over HTTP/1.1 can reach on this machine.
func benchCeiling(ctx context.Context, cfg benchConfig) (benchResult, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return benchResult{}, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(ceilingBody)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/v1/lookup/echo"
	cfg.count, cfg.target = 0, "bare-http"
	return runLoad(ctx, cfg, "ceiling", func(ctx context.Context, hc *http.Client, _, _ int) error {
		_, err := send(ctx, hc, "GET", url, nil, 200)
		return err
	}), nil
}

func newBenchCmd() *cobra.Command {
	var cfg benchConfig
	var binders string
	cmd := &cobra.Command{
		Use:   "bench MODE",
		Short: "Load-test binders: lookup, register, mixed, report, ceiling (or compare with etcd)",
		Long: `Drive a cluster with concurrent keep-alive clients and print ops/s and latency.

  lookup    GET /v1/lookup/TYPE (3 instances registered first) for --duration
  register  --count registrations
  mixed     --ratio lookups, the rest registrations, for --duration
  report    --count down-reports, half of live instances, half of dead ones
  ceiling   a bare net/http handler returning a fixed 90-byte JSON body,
            load generator in this process: the HTTP/1.1 ceiling here
  watchers  --clients blocking queries on one type, spread over the
            binders, then one registration: how long until all answered
  consul-health    GET /v1/health/service/TYPE (Consul's API) for --duration
  consul-register  --count PUT /v1/agent/service/register with a TTL check
  consul-watchers  watchers on Consul's /v1/health/service/TYPE

--target etcd runs lookup, register and mixed against etcd with its native
Go client (go.etcd.io/etcd/client/v3, one gRPC connection per client);
--target etcd-shared with one native client per etcd member, shared by
the clients talking to it; --target etcd-gateway through etcd's v3 JSON
gateway. --binders are then etcd client URLs.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "ceiling" {
				if binders == "" {
					return errors.New("no binders: set --binders or $LIEUR_BINDERS")
				}
				for _, b := range strings.Split(binders, ",") {
					b = strings.TrimRight(strings.TrimSpace(b), "/")
					if !strings.Contains(b, "://") {
						b = "http://" + b
					}
					cfg.binders = append(cfg.binders, b)
				}
			}
			if cfg.clients < 1 {
				return fmt.Errorf("--clients %d: want at least 1", cfg.clients)
			}
			if args[0] == "lookup" || args[0] == "mixed" || args[0] == "ceiling" || args[0] == "consul-health" {
				cfg.count = 0
			}
			res, err := runBench(cmd.Context(), cfg, args[0])
			if err != nil {
				return err
			}
			if cfg.json {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintln(cmd.OutOrStdout(), res)
			if res.Verdicts != "" {
				fmt.Fprintln(cmd.OutOrStdout(), "verdicts:", res.Verdicts)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&binders, "binders", os.Getenv("LIEUR_BINDERS"), "binder URLs, comma-separated (default $LIEUR_BINDERS)")
	f.StringVar(&cfg.target, "target", "lieur", "lieur, etcd (native client per client), etcd-shared (native client per member) or etcd-gateway")
	f.IntVar(&cfg.clients, "clients", 16, "concurrent keep-alive clients")
	f.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long lookup, mixed and ceiling run")
	f.IntVar(&cfg.count, "count", 10000, "operations of register and report")
	f.StringVar(&cfg.typ, "type", "bench", "service type to use")
	f.Float64Var(&cfg.ratio, "ratio", 0.9, "mixed: share of lookups")
	f.BoolVar(&cfg.json, "json", false, "print JSON")
	cmd.AddCommand(newBenchCompareCmd(), newBenchScaleCmd(), newBenchDNSCmd())
	return cmd
}
