package integration

// The lieur CLI's client commands (register, deregister, lookup, services,
// report, members, status), run as processes against a real three-node
// cluster: readable output by default, JSON with --json, and on an error a
// single line on stderr and a non-zero exit status.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/wire"
)

// procResult is what a finished command printed and its exit status.
type procResult struct {
	stdout string
	stderr string
	code   int
}

func (r procResult) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// procEnv is the test's environment without $LIEUR_BINDERS, plus extra.
//
// The race detector sleeps one second (atexit_sleep_ms) when a program
// returns from main, so that other goroutines can still report races; for
// short-lived commands run by the dozen that is most of their runtime, so
// unless $GORACE says otherwise it is shortened.
func procEnv(extra ...string) []string {
	var env []string
	gorace := false
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "LIEUR_BINDERS="):
			continue
		case strings.HasPrefix(kv, "GORACE="):
			gorace = true
		}
		env = append(env, kv)
	}
	if !gorace {
		env = append(env, "GORACE=atexit_sleep_ms=50")
	}
	return append(env, extra...)
}

// execBinary runs bin to completion (bounded to a minute). It does not use
// a testing.T, so it may run on any goroutine.
func execBinary(env []string, bin string, args ...string) (procResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = procEnv(env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := procResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return r, fmt.Errorf("%s %q did not finish within a minute (%v)", bin, args, r)
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		return r, fmt.Errorf("run %s %q: %w", bin, args, err)
	}
	return r, nil
}

func runBinary(t *testing.T, env []string, bin string, args ...string) procResult {
	t.Helper()
	r, err := execBinary(env, bin, args...)
	require.NoError(t, err)
	return r
}

// withBinders appends --binders when binders is not empty.
func withBinders(binders string, args []string) []string {
	args = append([]string(nil), args...)
	if binders != "" {
		args = append(args, "--binders", binders)
	}
	return args
}

// lieurOK runs the CLI, requires it to succeed silently on stderr (a race
// report would land there) and returns its stdout.
func lieurOK(t *testing.T, binders string, args ...string) string {
	t.Helper()
	r := runBinary(t, nil, lieurBin, withBinders(binders, args)...)
	require.Equal(t, 0, r.code, "lieur %q: %v", args, r)
	require.Empty(t, r.stderr, "lieur %q wrote to stderr", args)
	return r.stdout
}

// requireOneLineError checks the CLI's error convention: a non-zero exit,
// nothing on stdout, and exactly one line on stderr, without usage text,
// that contains want.
func requireOneLineError(t *testing.T, r procResult, want string) {
	t.Helper()
	require.NotEqual(t, 0, r.code, "the command failed: %v", r)
	assert.Empty(t, r.stdout, "nothing on stdout: %v", r)
	require.True(t, strings.HasSuffix(r.stderr, "\n"), "stderr ends its line: %v", r)
	assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "exactly one line on stderr: %v", r)
	assert.True(t, strings.HasPrefix(r.stderr, "lieur: "), "the line names the command: %v", r)
	assert.NotContains(t, r.stderr, "Usage:", "no usage dump: %v", r)
	assert.Contains(t, r.stderr, want)
}

func decodeOut[T any](t *testing.T, out string) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&v), "stdout is one JSON value: %q", out)
	require.False(t, dec.More(), "stdout holds nothing after the JSON value: %q", out)
	return v
}

// instancesAt returns what node i serves, by id.
func instancesAt(t *testing.T, c *cluster, i int) map[string]wire.Instance {
	t.Helper()
	var resp wire.ServicesResponse
	code, err := getJSON(c.nodes[i].url()+"/v1/services", &resp)
	require.NoError(t, err)
	require.Equal(t, 200, code)
	out := map[string]wire.Instance{}
	for _, s := range resp.Services {
		out[s.ID] = s
	}
	return out
}

// tableLines splits plain tabular output into lines of fields.
func tableLines(out string) [][]string {
	var rows [][]string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		rows = append(rows, strings.Fields(l))
	}
	return rows
}

func TestCLI(t *testing.T) {
	c := startCluster(t, 3)
	all := strings.Join(c.binders(), ",")
	one := c.nodes[1].url() // lookups at one node follow its round-robin cursor
	deadURL := fmt.Sprintf("http://127.0.0.1:%d", deadPort(t))

	t.Run("Register", func(t *testing.T) {
		registeredRe := regexp.MustCompile(`^registered (\S+) \(index (\d+)\)\n$`)
		for _, tc := range []struct {
			name string
			args []string
			json bool
			id   string // the id asked for, if any
			meta map[string]string
		}{
			{name: "json, generated id", args: []string{"--port", "21001", "--json"}, json: true},
			{name: "plain, generated id", args: []string{"--port", "21002"}},
			{name: "plain, given id", args: []string{"--port", "21003", "--id", "cli-plain"}, id: "cli-plain"},
			{
				name: "json, given id and meta",
				args: []string{"--port", "21004", "--id", "cli-meta", "--meta", "zone=a", "--meta", "tier=gold,x=y=z", "--json"},
				json: true, id: "cli-meta",
				meta: map[string]string{"zone": "a", "tier": "gold", "x": "y=z"},
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				args := append([]string{"register", "--type", "cliweb", "--address", "127.0.0.1"}, tc.args...)
				out := lieurOK(t, all, args...)
				var id string
				if tc.json {
					resp := decodeOut[wire.RegisterResponse](t, out)
					assert.NotZero(t, resp.Index)
					id = resp.ID
				} else {
					m := registeredRe.FindStringSubmatch(out)
					require.NotNil(t, m, "plain output %q", out)
					id = m[1]
				}
				require.NotEmpty(t, id)
				if tc.id != "" {
					assert.Equal(t, tc.id, id)
				}
				port, _ := strconv.Atoi(tc.args[1])
				c.waitConverged()
				for i := range c.nodes {
					assert.Contains(t, c.servicesAt(i), id, "node %s serves it", c.nodes[i].id)
					inst := instancesAt(t, c, i)[id]
					assert.Equal(t, "cliweb", inst.Type)
					assert.Equal(t, "127.0.0.1", inst.Address)
					assert.Equal(t, port, inst.Port)
					if tc.meta != nil {
						assert.Equal(t, tc.meta, inst.Meta, "node %s", c.nodes[i].id)
					}
				}
			})
		}
	})

	t.Run("LookupRoundRobin", func(t *testing.T) {
		ports := map[string]int{}
		for k := 1; k <= 3; k++ {
			id := fmt.Sprintf("clirr-%d", k)
			ports[id] = 22000 + k
			lieurOK(t, all, "register", "--type", "clirr", "--address", "127.0.0.1", "--port", strconv.Itoa(22000+k), "--id", id)
		}
		c.waitConverged()
		var got []string
		for k := 0; k < 6; k++ {
			inst := decodeOut[wire.Instance](t, lieurOK(t, one, "lookup", "clirr", "--json"))
			require.Contains(t, ports, inst.ID)
			assert.Equal(t, wire.Instance{ID: inst.ID, Type: "clirr", Address: "127.0.0.1", Port: ports[inst.ID], Meta: map[string]string{}, Status: "passing"}, inst)
			got = append(got, inst.ID)
		}
		assert.ElementsMatch(t, []string{"clirr-1", "clirr-2", "clirr-3"}, got[:3], "three lookups return the three instances")
		assert.Equal(t, got[:3], got[3:], "the next three follow the same cycle")

		out := lieurOK(t, one, "lookup", "clirr")
		assert.Regexp(t, `^clirr-[123] 127\.0\.0\.1:2200[123]\n$`, out)
		id := strings.Fields(out)[0]
		assert.Equal(t, fmt.Sprintf("%s 127.0.0.1:%d\n", id, ports[id]), out)
	})

	t.Run("Services", func(t *testing.T) {
		a1 := c.register(0, "clisvca", 23001)
		a2 := c.register(0, "clisvca", 23002)
		b1 := c.register(0, "clisvcb", 23003)
		c.waitConverged()
		for _, tc := range []struct {
			name  string
			args  []string
			want  []string
			exact bool // no other instance listed
		}{
			{"all, json", []string{"services", "--json"}, []string{a1, a2, b1}, false},
			{"one type, json", []string{"services", "clisvca", "--json"}, []string{a1, a2}, true},
			{"all, plain", []string{"services"}, []string{a1, a2, b1}, false},
			{"one type, plain", []string{"services", "clisvcb"}, []string{b1}, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out := lieurOK(t, all, tc.args...)
				var ids []string
				if strings.HasSuffix(tc.name, "json") {
					resp := decodeOut[wire.ServicesResponse](t, out)
					for _, s := range resp.Services {
						ids = append(ids, s.ID)
						if s.ID == a1 {
							assert.Equal(t, wire.Instance{ID: a1, Type: "clisvca", Address: "127.0.0.1", Port: 23001, Meta: map[string]string{}, Status: "passing"}, s)
						}
					}
					assert.True(t, sort.SliceIsSorted(resp.Services, func(i, j int) bool {
						x, y := resp.Services[i], resp.Services[j]
						return x.Type < y.Type || x.Type == y.Type && x.ID < y.ID
					}), "sorted by type then id")
				} else {
					rows := tableLines(out)
					require.NotEmpty(t, rows)
					assert.Equal(t, []string{"TYPE", "ID", "ADDRESS", "STATUS", "TAGS", "META"}, rows[0], "header of %q", out)
					for _, r := range rows[1:] {
						require.GreaterOrEqual(t, len(r), 3, "row %q", r)
						ids = append(ids, r[1])
						if r[1] == b1 {
							assert.Equal(t, []string{"clisvcb", b1, "127.0.0.1:23003", "passing", "-", "-"}, r)
						}
					}
				}
				if tc.exact {
					assert.ElementsMatch(t, tc.want, ids)
				} else {
					assert.Subset(t, ids, tc.want)
				}
			})
		}
	})

	t.Run("Report", func(t *testing.T) {
		livePort, _ := liveServer(t)
		live := c.register(0, "clirep", livePort)
		dead1 := c.register(0, "clirep", deadPort(t))
		dead2 := c.register(0, "clirep", deadPort(t))
		c.waitConverged()
		for _, tc := range []struct {
			name    string
			id      string
			json    bool
			verdict string
		}{
			{"dead, plain", dead1, false, wire.VerdictRemoved},
			{"dead, json", dead2, true, wire.VerdictRemoved},
			{"live, plain", live, false, wire.VerdictAlive},
			{"live, json", live, true, wire.VerdictAlive},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if tc.json {
					out := lieurOK(t, all, "report", tc.id, "--json")
					assert.Equal(t, wire.ReportResponse{ID: tc.id, Verdict: tc.verdict}, decodeOut[wire.ReportResponse](t, out))
				} else {
					assert.Equal(t, tc.id+": "+tc.verdict+"\n", lieurOK(t, all, "report", tc.id))
				}
			})
		}
		c.waitConverged()
		for i := range c.nodes {
			served := c.servicesAt(i)
			assert.Contains(t, served, live, "node %s keeps the live instance", c.nodes[i].id)
			assert.NotContains(t, served, dead1, "node %s", c.nodes[i].id)
			assert.NotContains(t, served, dead2, "node %s", c.nodes[i].id)
		}
	})

	t.Run("Deregister", func(t *testing.T) {
		plain := c.register(0, "clidereg", 24001)
		js := c.register(0, "clidereg", 24002)
		c.waitConverged()
		assert.Regexp(t, `^deregistered `+regexp.QuoteMeta(plain)+` \(index \d+\)\n$`, lieurOK(t, all, "deregister", plain))
		assert.NotZero(t, decodeOut[wire.IndexResponse](t, lieurOK(t, all, "deregister", js, "--json")).Index)
		c.waitConverged()
		for i := range c.nodes {
			assert.NotContains(t, c.servicesAt(i), plain, "node %s", c.nodes[i].id)
			assert.NotContains(t, c.servicesAt(i), js, "node %s", c.nodes[i].id)
		}
		waitLogged(t, c, "removed service: id="+plain+" reason=deregistered")
		for _, json := range []bool{false, true} {
			args := []string{"deregister", plain}
			if json {
				args = append(args, "--json")
			}
			r := runBinary(t, nil, lieurBin, withBinders(all, args)...)
			requireOneLineError(t, r, "unknown service id")
		}
	})

	t.Run("Errors", func(t *testing.T) {
		reg := []string{"register", "--type", "clibad", "--address", "127.0.0.1"}
		for _, tc := range []struct {
			name    string
			binders string
			args    []string
			want    string
		}{
			{"lookup of an unknown type", all, []string{"lookup", "nope"}, `unknown service type "nope"`},
			{"lookup of an unknown type, json", all, []string{"lookup", "nope", "--json"}, `unknown service type "nope"`},
			{"lookup --wait that runs out", all, []string{"lookup", "--wait", "300ms", "nope"}, `unknown service type "nope"`},
			{"services of an unknown type", all, []string{"services", "nope"}, `unknown service type "nope"`},
			{"report of an unknown id", all, []string{"report", "cli-never"}, "unknown service id"},
			{"deregister of an unknown id", all, []string{"deregister", "cli-never"}, "unknown service id"},
			{"port out of range", all, append(reg, "--port", "70000"), "port 70000"},
			{"port zero", all, append(reg, "--port", "0"), "port 0"},
			{"port not a number", all, append(reg, "--port", "eighty"), `"eighty"`},
			{"missing --type", all, []string{"register", "--address", "127.0.0.1", "--port", "80"}, `"type"`},
			{"missing --port", all, []string{"register", "--type", "clibad", "--address", "127.0.0.1"}, `"port"`},
			{"meta without =", all, append(reg, "--port", "80", "--meta", "novalue"), `"novalue" is not key=value`},
			{"bad type", all, []string{"lookup", "Not_A_Label"}, `type "Not_A_Label" must be a DNS label`},
			{"missing argument", all, []string{"lookup"}, "accepts 1 arg(s), received 0"},
			{"extra argument", all, []string{"services", "a", "b"}, "accepts at most 1 arg(s), received 2"},
			{"unknown flag", all, []string{"services", "--bogus"}, "unknown flag: --bogus"},
			{"no binders", "", []string{"services"}, "no binders: set --binders or $LIEUR_BINDERS"},
			{"binder not http", "", []string{"services", "--binders", "ftp://127.0.0.1:1"}, "scheme must be http or https"},
			{"every binder down", deadURL, []string{"lookup", "clirr"}, "no binder answered"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := runBinary(t, nil, lieurBin, withBinders(tc.binders, tc.args)...)
				requireOneLineError(t, r, tc.want)
			})
		}
		c.waitConverged()
		for i := range c.nodes {
			for id := range instancesAt(t, c, i) {
				assert.False(t, strings.HasPrefix(id, "clibad"), "a rejected registration is absent from %s: %s", c.nodes[i].id, id)
			}
		}
	})

	t.Run("BindersFromEnvironment", func(t *testing.T) {
		id := c.register(0, "clienv", 25001)
		c.waitConverged()
		for _, tc := range []struct {
			name string
			env  []string
			args []string
		}{
			{"environment only", []string{"LIEUR_BINDERS=" + all}, nil},
			{"one binder in the environment", []string{"LIEUR_BINDERS=" + c.nodes[2].url()}, nil},
			{"the flag wins over the environment", []string{"LIEUR_BINDERS=" + deadURL}, []string{"--binders", all}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := runBinary(t, tc.env, lieurBin, append([]string{"services", "clienv", "--json"}, tc.args...)...)
				require.Equal(t, 0, r.code, "%v", r)
				require.Empty(t, r.stderr)
				resp := decodeOut[wire.ServicesResponse](t, r.stdout)
				require.Len(t, resp.Services, 1)
				assert.Equal(t, id, resp.Services[0].ID)
			})
		}
		t.Run("neither", func(t *testing.T) {
			requireOneLineError(t, runBinary(t, nil, lieurBin, "lookup", "clienv"), "no binders")
		})
		t.Run("empty environment variable", func(t *testing.T) {
			requireOneLineError(t, runBinary(t, []string{"LIEUR_BINDERS="}, lieurBin, "lookup", "clienv"), "no binders")
		})
	})

	t.Run("Members", func(t *testing.T) {
		c.waitReady()
		cl := decodeOut[wire.ClusterResponse](t, lieurOK(t, all, "members", "--json"))
		require.Len(t, cl.Members, 3)
		byID := map[string]*node{}
		for _, n := range c.nodes {
			byID[n.id] = n
		}
		var leaders []string
		for _, m := range cl.Members {
			n := byID[m.ID]
			require.NotNil(t, n, "member %s is a node of the cluster", m.ID)
			assert.Equal(t, wire.Member{ID: n.id, RaftAddr: n.raftAddr, HTTPAddr: n.httpAddr, Voter: true, State: m.State, Role: wire.RoleVoter}, m)
			assert.Contains(t, []string{"leader", "follower"}, m.State, "state of %s", m.ID)
			if m.State == "leader" {
				leaders = append(leaders, m.ID)
			}
		}
		assert.Equal(t, []string{cl.Leader}, leaders, "exactly one leader, the one named")

		rows := tableLines(lieurOK(t, one, "members"))
		require.Len(t, rows, 4)
		assert.Equal(t, []string{"ID", "STATE", "RAFT", "HTTP", "ROLE", "UNHEARD"}, rows[0])
		for _, r := range rows[1:] {
			require.Len(t, r, 6)
			n := byID[r[0]]
			require.NotNil(t, n, "row %q names a node", r)
			assert.Equal(t, []string{n.id, n.raftAddr, n.httpAddr, "voter", "-"}, []string{r[0], r[2], r[3], r[4], r[5]})
		}
	})

	t.Run("Status", func(t *testing.T) {
		hash := c.waitConverged()
		type row struct {
			Binder string       `json:"binder"`
			Status *wire.Status `json:"status"`
			Error  string       `json:"error"`
		}
		rows := decodeOut[[]row](t, lieurOK(t, all, "status", "--json"))
		require.Len(t, rows, 3)
		var leaders int
		for i, r := range rows {
			n := c.nodes[i]
			assert.Equal(t, n.url(), r.Binder)
			require.NotNil(t, r.Status, "%s answered: %s", n.id, r.Error)
			assert.Empty(t, r.Error)
			assert.Equal(t, n.id, r.Status.ID)
			assert.Equal(t, hash, r.Status.TableHash, "table hash of %s", n.id)
			assert.Equal(t, rows[0].Status.AppliedIndex, r.Status.AppliedIndex)
			if r.Status.State == "leader" {
				leaders++
			}
		}
		assert.Equal(t, 1, leaders)

		lines := tableLines(lieurOK(t, all, "status"))
		require.Len(t, lines, 4)
		assert.Equal(t, []string{"BINDER", "ID", "STATE", "LEADER", "TERM", "APPLIED", "LAST", "LOG", "LAST", "CONTACT", "CAUGHT", "UP", "SERVICES", "TABLE", "HASH"}, lines[0])
		for i, l := range lines[1:] {
			require.Len(t, l, 11, "row %q", l)
			assert.Equal(t, []string{c.nodes[i].url(), c.nodes[i].id, "true", hash[:12]}, []string{l[0], l[1], l[8], l[10]})
		}

		// One binder of the list down: the others still answer.
		out := lieurOK(t, all+","+deadURL, "status")
		lines = tableLines(out)
		require.Len(t, lines, 5, out)
		assert.Equal(t, []string{deadURL, "-", "unreachable"}, lines[4][:3])

		// Every binder down: an error, after the table that says so.
		r := runBinary(t, nil, lieurBin, "status", "--binders", deadURL)
		require.NotEqual(t, 0, r.code, "%v", r)
		assert.Equal(t, "lieur: no binder answered\n", r.stderr)
		assert.Contains(t, r.stdout, "unreachable")
	})

	t.Run("LookupWaitReturnsOnRegistration", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(lieurBin, "lookup", "--wait", "20s", "cliwait", "--json", "--binders", all)
		cmd.Env = procEnv()
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Start())
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
		})

		registered := make(chan procResult, 1)
		go func() {
			r, err := execBinary(nil, lieurBin, "register", "--type", "cliwait", "--address", "127.0.0.1", "--port", "26001", "--id", "cliwait-1", "--binders", all)
			if err != nil {
				r.code, r.stderr = -1, err.Error()
			}
			registered <- r
		}()

		var err error
		waitFor(t, 40*time.Second, "lookup --wait to exit", func() (bool, string) {
			select {
			case err = <-exited:
				return true, ""
			default:
				return false, "the lookup is still running"
			}
		})
		require.NoError(t, err, "lookup --wait: stdout %q, stderr %q", stdout.String(), stderr.String())
		assert.Empty(t, stderr.String())
		inst := decodeOut[wire.Instance](t, stdout.String())
		assert.Equal(t, wire.Instance{ID: "cliwait-1", Type: "cliwait", Address: "127.0.0.1", Port: 26001, Meta: map[string]string{}, Status: "passing"}, inst)
		r := <-registered
		assert.Equal(t, 0, r.code, "register: %v", r)
	})
}
