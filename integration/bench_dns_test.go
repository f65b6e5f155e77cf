package integration

import (
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// `lieur bench dns` end to end: a real cluster and Debian's NSD, both
// driven by Debian's dnsperf, one short pair. It asserts that both servers
// answered and that the figures came out, not how fast anything is.
func TestBenchDNSDrivesLieurAndNSD(t *testing.T) {
	for _, tool := range []string{"dnsperf", "nsd", "taskset"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipped: %s is not installed here (%v); .ci/run installs Debian's dnsperf and nsd", tool, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, lieurBin, "bench", "dns", "--pairs", "1", "--duration", "1s").CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Logf("%s", out)

	// | 1 | lieur q/s | NSD q/s | ratio | lieur CPU | NSD CPU | lost |
	row := regexp.MustCompile(`(?m)^\| 1 \| (\d+) \| (\d+) \| ([0-9.]+) \| (\S+)(?: µs)? \| (\S+)(?: µs)? \| (\d+), (\d+) \|$`).FindSubmatch(out)
	require.NotNil(t, row, "a row for the pair in:\n%s", out)
	for i, what := range map[int]string{1: "lieur's queries/s", 2: "NSD's queries/s"} {
		qps, err := strconv.Atoi(string(row[i]))
		require.NoError(t, err)
		require.Greater(t, qps, 100, "%s: each server answered dnsperf", what)
	}
	pinned := regexp.MustCompile(`server on CPU \d+, dnsperf on CPU \d+`).Match(out)
	for i, what := range map[int]string{4: "lieur's CPU per answer", 5: "NSD's CPU per answer"} {
		if !pinned {
			require.Equal(t, "-", string(row[i]), "%s: only measured when pinned", what)
			continue
		}
		cpu, err := strconv.ParseFloat(string(row[i]), 64)
		require.NoError(t, err, "%s", what)
		require.Positive(t, cpu, "%s", what)
	}
	require.Regexp(t, `(?m)^\| median \| \d+ \| \d+ \| [0-9.]+ \|`, string(out))
}
