package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/spf13/cobra"

	"github.com/lieur/lieur/transport/wire"
)

// dnsBenchConfig is one `lieur bench dns`: lieur's DNS beside NSD serving
// the same records from a static zone, both driven by dnsperf.
type dnsBenchConfig struct {
	dnsperf, nsd string
	pairs        int
	duration     time.Duration
	clients      int
	inFlight     int
	// serverCPUs and loadCPUs, in taskset's list syntax, pin the server
	// under test (all three agents, or NSD) and dnsperf to their own
	// cores, so both servers get the same share of the machine whatever
	// else runs; empty leaves the scheduler free.
	serverCPUs, loadCPUs string
	nsdServers           int
}

// The records both servers hold: three instances of one type.
var dnsBenchAddrs = []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}

const dnsBenchName = "echo.service.lieur."

// dnsperfResult is what one dnsperf run measured.
type dnsperfResult struct {
	QPS        float64
	Completed  int64
	Lost       int64
	AvgLatency time.Duration
	// ServerCPU is the busy time of the server's cores during the run
	// divided by the queries answered; zero when the server is not pinned.
	ServerCPU time.Duration
}

var (
	dnsperfQPS       = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	dnsperfCompleted = regexp.MustCompile(`Queries completed:\s+([0-9]+)`)
	dnsperfLost      = regexp.MustCompile(`Queries lost:\s+([0-9]+)`)
	dnsperfLatency   = regexp.MustCompile(`Average Latency \(s\):\s+([0-9.]+)`)
)

// parseDnsperf reads dnsperf's statistics block.
func parseDnsperf(out []byte) (dnsperfResult, error) {
	var r dnsperfResult
	field := func(re *regexp.Regexp) (string, error) {
		m := re.FindSubmatch(out)
		if m == nil {
			return "", fmt.Errorf("dnsperf printed no %q line", strings.SplitN(re.String(), ":", 2)[0])
		}
		return string(m[1]), nil
	}
	var errs []error
	if s, err := field(dnsperfQPS); err != nil {
		errs = append(errs, err)
	} else {
		r.QPS, _ = strconv.ParseFloat(s, 64)
	}
	if s, err := field(dnsperfCompleted); err != nil {
		errs = append(errs, err)
	} else {
		r.Completed, _ = strconv.ParseInt(s, 10, 64)
	}
	if s, err := field(dnsperfLost); err != nil {
		errs = append(errs, err)
	} else {
		r.Lost, _ = strconv.ParseInt(s, 10, 64)
	}
	if s, err := field(dnsperfLatency); err != nil {
		errs = append(errs, err)
	} else {
		sec, _ := strconv.ParseFloat(s, 64)
		r.AvgLatency = time.Duration(math.Round(sec * float64(time.Second)))
	}
	return r, errors.Join(errs...)
}

// parseCPUList reads taskset's list syntax ("0", "0,2", "0-3").
func parseCPUList(s string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 0 || b < a {
			return nil, fmt.Errorf("CPU list %q: want numbers and ranges such as 0,2-3", s)
		}
		for c := a; c <= b; c++ {
			if !slices.Contains(cpus, c) {
				cpus = append(cpus, c)
			}
		}
	}
	return cpus, nil
}

// userHz is the unit of /proc/stat's counters on every Linux architecture
// Go supports (USER_HZ, not the kernel's tick).
const userHz = 100

// busyTicks adds up, over the named cores of a /proc/stat text, the time
// spent running something: user, nice, system, irq and softirq. Not idle
// or iowait (waiting), not steal (the hypervisor ran someone else), not
// guest and guest_nice (already inside user and nice).
func busyTicks(stat string, cpus []int) (int64, error) {
	want := map[string]bool{}
	for _, c := range cpus {
		want["cpu"+strconv.Itoa(c)] = true
	}
	var ticks int64
	found := 0
	for _, line := range strings.Split(stat, "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !want[f[0]] {
			continue
		}
		found++
		for _, i := range []int{1, 2, 3, 6, 7} { // user nice system [idle iowait] irq softirq
			n, err := strconv.ParseInt(f[i], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/stat %s: %w", f[0], err)
			}
			ticks += n
		}
	}
	if found != len(want) {
		return 0, fmt.Errorf("/proc/stat lists %d of the cores %v", found, cpus)
	}
	return ticks, nil
}

// cpuBusy is how long the given cores have been busy since boot.
func cpuBusy(cpus []int) (time.Duration, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	ticks, err := busyTicks(string(data), cpus)
	return time.Duration(ticks) * time.Second / userHz, err
}

func tasksetPrefix(cpus string) []string {
	if cpus == "" {
		return nil
	}
	return []string{"taskset", "-c", cpus}
}

// runDnsperf drives the server at addr with the queries in file.
func runDnsperf(ctx context.Context, cfg dnsBenchConfig, addr, file string) (dnsperfResult, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return dnsperfResult{}, err
	}
	args := append(tasksetPrefix(cfg.loadCPUs), cfg.dnsperf, "-s", host, "-p", port, "-d", file,
		"-l", strconv.Itoa(int(cfg.duration/time.Second)), "-c", strconv.Itoa(cfg.clients), "-q", strconv.Itoa(cfg.inFlight))
	var serverCPUs []int
	if cfg.serverCPUs != "" {
		if serverCPUs, err = parseCPUList(cfg.serverCPUs); err != nil {
			return dnsperfResult{}, err
		}
	}
	// The server's cores are read at dnsperf's start and when its run time
	// is up: after that dnsperf only waits (up to its 5 s timeout) for
	// answers it counts as lost, and the idle cluster's own work would be
	// charged to the answers.
	var before, after time.Duration
	if serverCPUs != nil {
		if before, err = cpuBusy(serverCPUs); err != nil {
			return dnsperfResult{}, err
		}
	}
	var output bytes.Buffer
	c := exec.CommandContext(ctx, args[0], args[1:]...)
	c.Stdout, c.Stderr = &output, &output
	if err := c.Start(); err != nil {
		return dnsperfResult{}, fmt.Errorf("dnsperf: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- c.Wait() }()
	var waitErr error
	select {
	case <-time.After(cfg.duration):
		if serverCPUs != nil {
			after, err = cpuBusy(serverCPUs)
		}
		waitErr = <-exited
	case waitErr = <-exited: // ended before its run time: it failed
	}
	if waitErr != nil {
		return dnsperfResult{}, fmt.Errorf("dnsperf: %w: %s", waitErr, bytes.TrimSpace(output.Bytes()))
	}
	if err != nil {
		return dnsperfResult{}, err
	}
	r, err := parseDnsperf(output.Bytes())
	if err != nil {
		return r, err
	}
	if serverCPUs != nil && r.Completed > 0 && after > 0 {
		r.ServerCPU = (after - before) / time.Duration(r.Completed)
	}
	return r, nil
}

// awaitDNSAnswer waits, up to 30 s, until addr answers dnsBenchName with
// every address both servers hold.
func awaitDNSAnswer(ctx context.Context, addr string) error {
	q := new(mdns.Msg)
	q.SetQuestion(dnsBenchName, mdns.TypeA)
	c := &mdns.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		in, _, err := c.ExchangeContext(ctx, q, addr)
		if err == nil && len(in.Answer) == len(dnsBenchAddrs) {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("%d answers, want %d", len(in.Answer), len(dnsBenchAddrs))
			}
			return fmt.Errorf("DNS at %s not ready: %w", addr, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// benchLieurDNS starts a fresh 3-agent cluster, registers the instances
// and measures agent n1's DNS.
func benchLieurDNS(ctx context.Context, cfg dnsBenchConfig, dir, queries string) (dnsperfResult, error) {
	layout, err := loadOrCreateLayout(dir, 3)
	if err != nil {
		return dnsperfResult{}, err
	}
	urls, stop, err := startLieurAgents(ctx, layout, tasksetPrefix(cfg.serverCPUs), func(n devNode) []string {
		return []string{"--dns-addr", n.DNSAddr}
	})
	if err != nil {
		return dnsperfResult{}, err
	}
	defer stop()
	hc := &http.Client{Timeout: 10 * time.Second}
	for _, a := range dnsBenchAddrs {
		body := wire.RegisterRequest{Type: "echo", Address: a, Port: 8080}
		if _, err := send(ctx, hc, "POST", urls[0]+"/v1/services", body, 200); err != nil {
			return dnsperfResult{}, err
		}
	}
	if err := awaitDNSAnswer(ctx, layout.Nodes[0].DNSAddr); err != nil {
		return dnsperfResult{}, err
	}
	return runDnsperf(ctx, cfg, layout.Nodes[0].DNSAddr, queries)
}

// nsdZone is the static zone holding what lieur's table holds; TTL 0 as
// lieur's default.
func nsdZone() string {
	var b strings.Builder
	b.WriteString("$ORIGIN lieur.\n$TTL 0\n@ IN SOA ns.lieur. hostmaster.lieur. 1 3600 600 86400 0\n@ IN NS ns.lieur.\nns IN A 127.0.0.1\n")
	for _, a := range dnsBenchAddrs {
		fmt.Fprintf(&b, "echo.service IN A %s\n", a)
	}
	return b.String()
}

// nsdConf serves the zone at addr from dir, unprivileged files only, and
// with response rate limiting off: Debian's NSD otherwise limits one
// source to 200 answers a second, which would measure the limit.
func nsdConf(dir, addr string, servers int) string {
	host, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(`server:
  ip-address: %s@%s
  server-count: %d
  username: ""
  zonesdir: %q
  database: ""
  pidfile: %q
  xfrdfile: %q
  zonelistfile: %q
  logfile: %q
  rrl-ratelimit: 0
  verbosity: 0
remote-control:
  control-enable: no
zone:
  name: lieur.
  zonefile: lieur.zone
`, host, port, servers, dir, filepath.Join(dir, "nsd.pid"), filepath.Join(dir, "xfrd.state"),
		filepath.Join(dir, "zone.list"), filepath.Join(dir, "nsd.log"))
}

// benchNSD starts NSD on the static zone and measures it.
func benchNSD(ctx context.Context, cfg dnsBenchConfig, dir, queries string) (dnsperfResult, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return dnsperfResult{}, err
	}
	ports, err := freePorts(1)
	if err != nil {
		return dnsperfResult{}, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	conf := filepath.Join(dir, "nsd.conf")
	if err := os.WriteFile(filepath.Join(dir, "lieur.zone"), []byte(nsdZone()), 0o640); err != nil {
		return dnsperfResult{}, err
	}
	if err := os.WriteFile(conf, []byte(nsdConf(dir, addr, cfg.nsdServers)), 0o640); err != nil {
		return dnsperfResult{}, err
	}
	args := append(tasksetPrefix(cfg.serverCPUs), cfg.nsd, "-d", "-c", conf)
	c := exec.Command(args[0], args[1:]...)
	stderr, err := os.Create(filepath.Join(dir, "nsd.stderr"))
	if err != nil {
		return dnsperfResult{}, err
	}
	c.Stderr = stderr
	err = c.Start()
	stderr.Close()
	if err != nil {
		return dnsperfResult{}, err
	}
	defer stopAll([]*exec.Cmd{c})
	if err := awaitDNSAnswer(ctx, addr); err != nil {
		return dnsperfResult{}, fmt.Errorf("nsd: %w (its output: %s and %s)", err, stderr.Name(), filepath.Join(dir, "nsd.log"))
	}
	return runDnsperf(ctx, cfg, addr, queries)
}

func medianOf(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// benchDNS runs cfg.pairs pairs, each a run against a fresh lieur cluster
// and one against NSD, the order alternating from pair to pair so that a
// drift of the machine weighs on both, and prints each pair and the
// medians.
func benchDNS(ctx context.Context, out io.Writer, cfg dnsBenchConfig) (err error) {
	dir, err := os.MkdirTemp("", "lieur-bench-dns-")
	if err != nil {
		return err
	}
	defer removeUnlessFailed(dir, &err)
	queries := filepath.Join(dir, "queries.txt")
	if err := os.WriteFile(queries, bytes.Repeat([]byte(strings.TrimSuffix(dnsBenchName, ".")+" A\n"), 1000), 0o640); err != nil {
		return err
	}
	pin := "unpinned"
	if cfg.serverCPUs != "" {
		pin = fmt.Sprintf("server on CPU %s, dnsperf on CPU %s", cfg.serverCPUs, cfg.loadCPUs)
	}
	fmt.Fprintf(out, "dnsperf -c %d -q %d -l %s, %s, 1000 x %s A (3 addresses); NSD server-count %d\n\n",
		cfg.clients, cfg.inFlight, cfg.duration, pin, strings.TrimSuffix(dnsBenchName, "."), cfg.nsdServers)
	fmt.Fprintln(out, "| pair | lieur q/s | NSD q/s | lieur / NSD | lieur CPU per answer | NSD CPU per answer | lost (lieur, NSD) |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|")
	var lq, nq, ratios, lcpu, ncpu []float64
	for i := range cfg.pairs {
		var l, n dnsperfResult
		runLieur := func() (err error) {
			l, err = benchLieurDNS(ctx, cfg, filepath.Join(dir, fmt.Sprintf("lieur-%d", i)), queries)
			return err
		}
		runNSD := func() (err error) {
			n, err = benchNSD(ctx, cfg, filepath.Join(dir, fmt.Sprintf("nsd-%d", i)), queries)
			return err
		}
		first, second := runLieur, runNSD
		if i%2 == 1 {
			first, second = runNSD, runLieur
		}
		if err := first(); err != nil {
			return err
		}
		if err := second(); err != nil {
			return err
		}
		lq, nq = append(lq, l.QPS), append(nq, n.QPS)
		ratios = append(ratios, l.QPS/n.QPS)
		lcpu, ncpu = append(lcpu, l.ServerCPU.Seconds()*1e6), append(ncpu, n.ServerCPU.Seconds()*1e6)
		fmt.Fprintf(out, "| %d | %.0f | %.0f | %.2f | %s | %s | %d, %d |\n", i+1, l.QPS, n.QPS, l.QPS/n.QPS,
			cpuPerAnswer(l.ServerCPU), cpuPerAnswer(n.ServerCPU), l.Lost, n.Lost)
	}
	fmt.Fprintf(out, "| median | %.0f | %.0f | %.2f | %s | %s | |\n", medianOf(lq), medianOf(nq), medianOf(ratios),
		cpuPerAnswer(time.Duration(math.Round(medianOf(lcpu)*1e3))), cpuPerAnswer(time.Duration(math.Round(medianOf(ncpu)*1e3))))
	return nil
}

func cpuPerAnswer(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f µs", d.Seconds()*1e6)
}

func newBenchDNSCmd() *cobra.Command {
	cfg := dnsBenchConfig{}
	cmd := &cobra.Command{
		Use:   "dns",
		Short: "Measure lieur's DNS beside NSD serving the same records, both under dnsperf",
		Long: `Start a fresh 3-agent cluster with DNS on agent n1, register 3 instances
of type echo, and drive n1 with dnsperf (1000 x "echo.service.lieur A");
then serve the same 3 A records from a static zone with NSD and drive it
the same way. Pairs alternate which server goes first. Each pair prints
both rates, their ratio, and, when the server is pinned, the busy time
of the server's cores per answered query (the cost of an answer, which
does not depend on how fast dnsperf can go).

Needs dnsperf and nsd (Debian: apt-get install dnsperf nsd) and taskset.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, p := range []*string{&cfg.dnsperf, &cfg.nsd} {
				path, err := exec.LookPath(*p)
				if err != nil {
					return fmt.Errorf("%s: %w (Debian: apt-get install dnsperf nsd)", *p, err)
				}
				*p = path
			}
			if cfg.pairs < 1 || cfg.clients < 1 || cfg.inFlight < 1 || cfg.nsdServers < 1 {
				return errors.New("--pairs, --clients, --in-flight and --nsd-servers must be at least 1")
			}
			if cfg.duration < time.Second {
				return fmt.Errorf("--duration %s: dnsperf runs whole seconds, want at least 1s", cfg.duration)
			}
			if (cfg.serverCPUs == "") != (cfg.loadCPUs == "") {
				return errors.New("--server-cpus and --load-cpus go together (both empty: unpinned)")
			}
			for _, l := range []string{cfg.serverCPUs, cfg.loadCPUs} {
				if l == "" {
					continue
				}
				if _, err := parseCPUList(l); err != nil {
					return err
				}
			}
			if cfg.serverCPUs != "" {
				if _, err := exec.LookPath("taskset"); err != nil {
					return fmt.Errorf("pinning needs taskset (util-linux): %w", err)
				}
			}
			return benchDNS(cmd.Context(), cmd.OutOrStdout(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.dnsperf, "dnsperf", "dnsperf", "the dnsperf binary")
	f.StringVar(&cfg.nsd, "nsd", "nsd", "the nsd binary")
	f.IntVar(&cfg.pairs, "pairs", 6, "pairs of runs (one lieur, one NSD)")
	f.DurationVar(&cfg.duration, "duration", 8*time.Second, "length of each dnsperf run (whole seconds)")
	f.IntVar(&cfg.clients, "clients", 8, "dnsperf -c: client sockets")
	f.IntVar(&cfg.inFlight, "in-flight", 200, "dnsperf -q: queries outstanding at most")
	f.IntVar(&cfg.nsdServers, "nsd-servers", 1, "NSD's server-count (1 was its best here)")
	serverCPUs, loadCPUs := defaultPinning()
	f.StringVar(&cfg.serverCPUs, "server-cpus", serverCPUs, "cores for the server under test, taskset syntax; empty with --load-cpus empty: unpinned")
	f.StringVar(&cfg.loadCPUs, "load-cpus", loadCPUs, "cores for dnsperf, taskset syntax")
	return cmd
}
