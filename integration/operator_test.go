package integration

// Read replicas (--nonvoter), the operator commands (promote, demote,
// transfer-leader, remove, raft list-peers) and dead-server cleanup
// (--cleanup-dead-after), with real agent processes and the real CLI.

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/wire"
)

// membersOf returns node i's /v1/cluster answer by member id.
func membersOf(t *testing.T, c *cluster, i int) (string, map[string]wire.Member) {
	t.Helper()
	var cl wire.ClusterResponse
	code, err := getJSON(c.nodes[i].url()+"/v1/cluster", &cl)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	out := map[string]wire.Member{}
	for _, m := range cl.Members {
		out[m.ID] = m
	}
	return cl.Leader, out
}

// consulPeers is what node i's Consul view lists as Raft peers: the voters.
func consulPeers(t *testing.T, c *cluster, i int) []string {
	t.Helper()
	var peers []string
	code, err := getJSON(c.nodes[i].url()+"/v1/status/peers", &peers)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	return peers
}

// counterAt reads a counter without labels from node i's /metrics.
func counterAt(t *testing.T, c *cluster, i int, name string) float64 {
	t.Helper()
	resp, err := httpc.Get(c.nodes[i].url() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	require.NoError(t, sc.Err())
	t.Fatalf("no %s in node %s's metrics", name, c.nodes[i].id)
	return 0
}

func (c *cluster) indexOf(id string) int {
	for i, n := range c.nodes {
		if n.id == id {
			return i
		}
	}
	c.t.Fatalf("no node %s", id)
	return -1
}

// A read replica joined with --nonvoter serves lookups, lists and the
// Consul views from its own memory and forwards registrations; it is
// listed as a nonvoter and never counts toward the quorum. The operator
// commands promote and demote it, move leadership and remove it, through
// any binder, and refuse what would cost the voters their quorum.
func TestReadReplicaAndOperatorCommands(t *testing.T) {
	c := newCluster(t, 4, "--write-hold=1s")
	var voters []string
	for _, n := range c.nodes[:3] {
		voters = append(voters, n.id+"="+n.raftAddr)
	}
	for i := 0; i < 3; i++ {
		c.startPeers(i, strings.Join(voters, ","))
	}
	c.waitReady()
	c.start(3, "--join", c.nodes[0].url(), "--nonvoter")
	c.waitReady()
	const replica = 3
	all := strings.Join(c.binders(), ",")
	rURL := c.nodes[replica].url()

	t.Run("listed as a nonvoter, not a Consul peer", func(t *testing.T) {
		cl := decodeOut[wire.ClusterResponse](t, lieurOK(t, all, "members", "--json"))
		require.Len(t, cl.Members, 4)
		for _, m := range cl.Members {
			want := wire.RoleVoter
			if m.ID == "n4" {
				want = wire.RoleNonvoter
			}
			assert.Equal(t, want, m.Role, "role of %s", m.ID)
			assert.Equal(t, want == wire.RoleVoter, m.Voter, "voter flag of %s", m.ID)
		}
		rows := tableLines(lieurOK(t, rURL, "members"))
		require.Len(t, rows, 5)
		assert.Equal(t, []string{"ID", "STATE", "RAFT", "HTTP", "ROLE", "UNHEARD"}, rows[0])
		assert.Contains(t, rows, []string{"n4", "follower", c.nodes[replica].raftAddr, c.nodes[replica].httpAddr, "nonvoter", "-"})
		assert.Len(t, consulPeers(t, c, replica), 3, "Consul's status/peers lists the voters")
	})

	t.Run("serves reads from memory and forwards writes", func(t *testing.T) {
		var reg wire.RegisterResponse
		code, err := postJSON(rURL+"/v1/services", wire.RegisterRequest{Type: "echo", Address: "127.0.0.1", Port: 7001}, &reg)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code, "a registration through the replica is forwarded")
		var inst wire.Instance
		code, err = getJSON(rURL+"/v1/lookup/echo", &inst)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
		assert.Equal(t, reg.ID, inst.ID)

		other := c.register(0, "echo", 7002)
		require.Contains(t, instancesAt(t, c, 0), other)
		waitFor(t, 10*time.Second, "the replica to apply a write made elsewhere", func() (bool, string) {
			_, ok := instancesAt(t, c, replica)[other]
			return ok, "not yet"
		})
		var catalog []map[string]any
		code, err = getJSON(rURL+"/v1/catalog/service/echo", &catalog)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
		assert.Len(t, catalog, 2, "the Consul catalog view of the replica")
	})

	leader := c.leader()
	follower := (leader + 1) % 3
	other := 3 - leader - follower

	t.Run("list-peers", func(t *testing.T) {
		out := lieurOK(t, rURL, "operator", "raft", "list-peers")
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		require.Len(t, lines, 5)
		assert.Regexp(t, `^ID\s+ADDRESS\s+HTTP\s+VOTER\s+LEADER\s+STATE\s+LAST CONTACT\s+LAST INDEX\s+UNHEARD$`, lines[0])
		peers := decodeOut[wire.RaftPeersResponse](t, lieurOK(t, rURL, "operator", "raft", "list-peers", "--json"))
		assert.Equal(t, c.nodes[leader].id, peers.Leader)
		require.Len(t, peers.Peers, 4)
		for _, p := range peers.Peers {
			i := c.indexOf(p.ID)
			assert.Equal(t, c.nodes[i].raftAddr, p.RaftAddr)
			assert.Equal(t, i != replica, p.Voter, "voter flag of %s", p.ID)
			assert.Equal(t, i == leader, p.Leader, "leader flag of %s", p.ID)
			assert.True(t, p.Reachable, "%s answered", p.ID)
			assert.NotZero(t, p.LastIndex, "last index of %s", p.ID)
			assert.GreaterOrEqual(t, p.LastContactMs, int64(0), "%s heard from the leader", p.ID)
			assert.Zero(t, p.UnheardMs, "the leader hears %s", p.ID)
		}
	})

	t.Run("promote and demote", func(t *testing.T) {
		assert.Equal(t, "n4 is a voter\n", lieurOK(t, c.nodes[follower].url(), "operator", "promote", "n4"), "through a follower")
		_, ms := membersOf(t, c, leader)
		assert.Equal(t, wire.RoleVoter, ms["n4"].Role)
		waitFor(t, 10*time.Second, "the replica's Consul view to list four peers", func() (bool, string) {
			p := consulPeers(t, c, replica)
			return len(p) == 4, fmt.Sprint(p)
		})
		assert.Equal(t, "n4 is a nonvoter\n", lieurOK(t, rURL, "operator", "demote", "n4"), "through the replica itself")
		_, ms = membersOf(t, c, leader)
		assert.Equal(t, wire.RoleNonvoter, ms["n4"].Role)

		r := runBinary(t, nil, lieurBin, "operator", "demote", c.nodes[other].id, "--binders", rURL)
		requireOneLineError(t, r, "would leave 2 voters")
		requireOneLineError(t, runBinary(t, nil, lieurBin, "operator", "promote", "n9", "--binders", rURL), "not a member")
	})

	t.Run("transfer-leader", func(t *testing.T) {
		to := c.nodes[follower].id
		assert.Equal(t, "leader: "+to+"\n", lieurOK(t, c.nodes[other].url(), "operator", "transfer-leader", "--to", to))
		assert.Equal(t, follower, c.leader())
		requireOneLineError(t, runBinary(t, nil, lieurBin, "operator", "transfer-leader", "--to", "n4", "--binders", rURL), "nonvoter and cannot lead")
	})

	t.Run("never counts toward the quorum", func(t *testing.T) {
		// Two voters of three go: the replica and one voter are left. The
		// voter campaigns; the replica, raft says, does not.
		for i := 0; i < 3; i++ {
			if i != other {
				c.kill(i)
			}
		}
		waitFor(t, 20*time.Second, "the replica to decline an election", func() (bool, string) {
			return strings.Contains(c.logSinceStart(replica), "not part of stable configuration, aborting election"), "not logged yet"
		})
		st, err := c.status(replica)
		require.NoError(t, err)
		assert.Equal(t, "follower", st.State)
		var e wire.Error
		code, err := postJSON(rURL+"/v1/services", wire.RegisterRequest{Type: "echo", Address: "127.0.0.1", Port: 7003}, &e)
		require.NoError(t, err)
		assert.Equal(t, http.StatusServiceUnavailable, code, "no write without a quorum of voters: %+v", e)
		assert.Equal(t, wire.CodeNoLeader, e.Code)
		var list wire.ServicesResponse
		code, err = getJSON(rURL+"/v1/services/echo?stale=true", &list)
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, code, "stale reads still answer from the replica's memory")
		assert.Len(t, list.Services, 2)
		for i := 0; i < 3; i++ {
			if !c.nodes[i].running() {
				c.restart(i)
			}
		}
		c.waitReady()
	})

	t.Run("remove", func(t *testing.T) {
		assert.Equal(t, "removed n4\n", lieurOK(t, c.nodes[0].url(), "operator", "remove", "n4"))
		c.kill(replica)
		_, ms := membersOf(t, c, 0)
		assert.Len(t, ms, 3)
		assert.NotContains(t, ms, "n4")
		requireOneLineError(t, runBinary(t, nil, lieurBin, "operator", "remove", c.nodes[c.leader()].id, "--binders", all), "is the leader")
	})
}

// With --cleanup-dead-after, the leader removes a voter it has not heard
// from for that long (logged, counted, shown as unheard meanwhile), and
// keeps a dead voter whose removal would leave fewer than three.
//
// Four voters with one dead need all three others for a quorum, and on a
// loaded machine the default 175 ms lease makes the leader step down now
// and then, which starts the cleanup's clock again; the Raft timeouts are
// relaxed so the test measures the cleanup, not the machine.
func TestCleanupDeadServers(t *testing.T) {
	c := startCluster(t, 4, "--cleanup-dead-after=3s",
		"--heartbeat-timeout=1s", "--election-timeout=1s", "--leader-lease-timeout=500ms")
	leader := c.leader()
	var victims []int
	for i := range c.nodes {
		if i != leader {
			victims = append(victims, i)
		}
	}
	dead := c.nodes[victims[0]].id
	watcher := victims[2]
	c.kill(victims[0])

	waitFor(t, 10*time.Second, "a follower's members to show "+dead+" unheard", func() (bool, string) {
		rows := tableLines(lieurOK(t, c.nodes[watcher].url(), "members"))
		for _, r := range rows {
			if len(r) == 6 && r[0] == dead && r[5] != "-" {
				return true, ""
			}
		}
		return false, fmt.Sprint(rows)
	})
	// Whichever node leads by then removes it; its log says so and its
	// counter counts it.
	remover := -1
	waitFor(t, 20*time.Second, "a leader to remove "+dead+", log and count it", func() (bool, string) {
		_, ms := membersOf(t, c, watcher)
		_, member := ms[dead]
		remover = -1
		for _, i := range c.running() {
			if strings.Contains(c.logOf(i), "removed dead server: id="+dead+" role=voter") {
				remover = i
			}
		}
		if member || remover < 0 {
			return false, fmt.Sprintf("member %t, logged by %d", member, remover)
		}
		counted := counterAt(t, c, remover, "lieur_dead_servers_removed_total")
		return counted == 1, fmt.Sprintf("counted %v", counted)
	})

	second := c.nodes[victims[1]].id
	c.kill(victims[1])
	keeper := -1
	waitFor(t, 20*time.Second, "a leader to keep "+second, func() (bool, string) {
		for _, i := range c.running() {
			if strings.Contains(c.logOf(i), "dead server kept: id="+second) {
				keeper = i
				return true, ""
			}
		}
		return false, "not logged yet"
	})
	assert.Contains(t, c.logOf(keeper), "would leave 2 voters; the cleanup keeps at least 3")
	_, ms := membersOf(t, c, keeper)
	assert.Contains(t, ms, second, "three voters: the dead one stays")
	total := 0.0
	for _, i := range c.running() {
		total += counterAt(t, c, i, "lieur_dead_servers_removed_total")
	}
	assert.Equal(t, 1.0, total, "one removal in all")
	c.register(watcher, "echo", 7100) // two voters of three still commit
}
