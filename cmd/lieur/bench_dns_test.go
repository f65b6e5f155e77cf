package main

import (
	"runtime"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/stretchr/testify/require"
)

// dnsperf 2.x's statistics block, as Debian's dnsperf prints it.
const dnsperfOutput = `DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 127.0.0.1 -p 5399 -d q.txt -l 2 -c 8 -q 200
[Status] Sending queries (to 127.0.0.1:5399)
[Status] Started at: Wed Dec  2 15:18:20 2026
[Status] Stopping after 2.000000 seconds
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         193024
  Queries completed:    193016 (100.00%)
  Queries lost:         8 (0.00%)

  Response codes:       NOERROR 193016 (100.00%)
  Average packet size:  request 36, response 95
  Run time (s):         2.000573
  Queries per second:   96480.358472

  Average Latency (s):  0.001985 (min 0.000027, max 0.011934)
  Latency StdDev (s):   0.000618
`

func TestParseDnsperf(t *testing.T) {
	r, err := parseDnsperf([]byte(dnsperfOutput))
	require.NoError(t, err)
	require.InDelta(t, 96480.358472, r.QPS, 1e-6)
	require.EqualValues(t, 193016, r.Completed)
	require.EqualValues(t, 8, r.Lost)
	require.Equal(t, 1985*time.Microsecond, r.AvgLatency)

	// A run that failed before its statistics names what is missing
	// rather than reporting zeros.
	_, err = parseDnsperf([]byte("[Fatal] failed to open file q.txt\n"))
	require.ErrorContains(t, err, "Queries per second")
	require.ErrorContains(t, err, "Queries completed")
}

func TestParseCPUList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		bad  bool
	}{
		{in: "0", want: []int{0}},
		{in: "0,2", want: []int{0, 2}},
		{in: "1-3", want: []int{1, 2, 3}},
		{in: "0, 2-3", want: []int{0, 2, 3}},
		{in: "0,0-1,1", want: []int{0, 1}},
		{in: "", bad: true},
		{in: "3-1", bad: true},
		{in: "-1", bad: true},
		{in: "a", bad: true},
		{in: "0,", bad: true},
	} {
		got, err := parseCPUList(tc.in)
		if tc.bad {
			require.Error(t, err, "%q", tc.in)
			continue
		}
		require.NoError(t, err, "%q", tc.in)
		require.Equal(t, tc.want, got, "%q", tc.in)
	}
}

// The static zone must hold what the cluster holds, or the comparison
// measures two different answers.
func TestNSDZoneHoldsTheBenchRecords(t *testing.T) {
	zp := mdns.NewZoneParser(strings.NewReader(nsdZone()), "", "lieur.zone")
	var addrs []string
	soa := false
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		switch rr := rr.(type) {
		case *mdns.A:
			require.EqualValues(t, 0, rr.Hdr.Ttl, "TTL 0, as lieur's default")
			if rr.Hdr.Name == dnsBenchName {
				addrs = append(addrs, rr.A.String())
			}
		case *mdns.SOA:
			soa = rr.Hdr.Name == "lieur."
		}
	}
	require.NoError(t, zp.Err())
	require.True(t, soa, "the zone has its SOA")
	require.Equal(t, dnsBenchAddrs, addrs)
}

func TestNSDConfListensWhereAsked(t *testing.T) {
	conf := nsdConf("/tmp/x", "127.0.0.1:5399", 2)
	require.Contains(t, conf, "ip-address: 127.0.0.1@5399\n")
	require.Contains(t, conf, "server-count: 2\n")
	require.Contains(t, conf, "rrl-ratelimit: 0\n")
	require.Contains(t, conf, `zonesdir: "/tmp/x"`)
}

// /proc/stat's fields: user nice system idle iowait irq softirq steal
// guest guest_nice.
const procStat = `cpu  900 0 900 5000 10 0 100 0 0 0
cpu0 100 10 200 3000 5 3 40 7 50 2
cpu1 800 0 700 2000 5 0 60 0 0 0
intr 12345
`

func TestBusyTicksCountsRunningTimeOnly(t *testing.T) {
	got, err := busyTicks(procStat, []int{0})
	require.NoError(t, err)
	// user + nice + system + irq + softirq; not idle, iowait, steal, or
	// guest time (counted in user and nice already).
	require.EqualValues(t, 100+10+200+3+40, got)

	got, err = busyTicks(procStat, []int{0, 1})
	require.NoError(t, err)
	require.EqualValues(t, 353+800+700+60, got)

	_, err = busyTicks(procStat, []int{0, 2})
	require.ErrorContains(t, err, "1 of the cores")
	_, err = busyTicks("cpu0 1 2 x 4 5 6 7 8\n", []int{0})
	require.Error(t, err, "a field that is not a number")
}

func TestCPUBusyReadsTheNamedCores(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("skipped: /proc/stat is Linux's; lieur bench dns runs on Linux only")
	}
	before, err := cpuBusy([]int{0})
	require.NoError(t, err)
	require.Positive(t, before)
	after, err := cpuBusy([]int{0})
	require.NoError(t, err)
	require.GreaterOrEqual(t, after, before, "busy time only grows")
}
