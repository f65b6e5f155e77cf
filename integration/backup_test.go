package integration

// Backup and restore (`lieur snapshot save|inspect|restore`) and disaster
// recovery (`lieur agent --recover-peers`), with real agent processes.

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/wire"
)

// putSnapshot sends a file to PUT /v1/snapshot and returns the status and
// the JSON error (when not 2xx).
func putSnapshot(t *testing.T, url string, file []byte) (int, wire.Error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url+"/v1/snapshot", bytes.NewReader(file))
	require.NoError(t, err)
	req.Header.Set("Content-Type", wire.ContentTypeSnapshot)
	resp, err := httpc.Do(req)
	require.NoError(t, err)
	var e wire.Error
	code, err := decode(resp, &e)
	require.NoError(t, err)
	return code, e
}

// A backup saved from a follower, inspected, then restored through
// another follower after the table moved on: every binder ends with the
// saved table, the one that was down during the restore included, and a
// damaged file is refused by the CLI and by the API without changing
// anything.
func TestBackupSaveInspectRestore(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader()
	followers := []int{}
	for i := range c.nodes {
		if i != leader {
			followers = append(followers, i)
		}
	}
	for i, typ := range []string{"echo", "echo", "echo", "time", "time"} {
		c.register(i%3, typ, 20000+i)
	}
	c.waitConverged()
	saved := instancesAt(t, c, followers[0])
	require.Len(t, saved, 5)

	dir := t.TempDir()
	file := filepath.Join(dir, "table.snap")
	out := lieurOK(t, c.nodes[followers[0]].url(), "snapshot", "save", file)
	assert.Contains(t, out, "saved "+file+": index ")
	assert.Contains(t, out, "5 instances of 2 types")
	fi, err := os.Stat(file)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "a backup is private")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file left beside it")

	info := decodeOut[binder.SnapshotInfo](t, lieurOK(t, "", "snapshot", "inspect", "--json", file))
	assert.Equal(t, 5, info.Instances)
	assert.Equal(t, map[string]int{"echo": 3, "time": 2}, info.Types)
	assert.Equal(t, c.nodes[leader].id, info.Node, "taken on the leader")
	text := lieurOK(t, "", "snapshot", "inspect", file)
	assert.Contains(t, text, "(verified)")
	assert.Regexp(t, `echo\s+3`, text)

	// The table moves on.
	extra := c.register(followers[1], "web", 21000)
	var gone string
	for id := range saved {
		gone = id
		break
	}
	code, err := doJSON(http.MethodDelete, c.nodes[leader].url()+"/v1/services/"+gone, nil)
	require.NoError(t, err)
	require.Equal(t, 200, code)
	moved := c.waitConverged()
	movedStatus, err := c.status(leader)
	require.NoError(t, err)

	data, err := os.ReadFile(file)
	require.NoError(t, err)
	damaged := bytes.Clone(data)
	damaged[len(damaged)-8] ^= 0x10
	badFile := filepath.Join(dir, "damaged.snap")
	require.NoError(t, os.WriteFile(badFile, damaged, 0o600))
	r := runBinary(t, nil, lieurBin, "snapshot", "restore", badFile, "--binders", c.nodes[followers[1]].url())
	requireOneLineError(t, r, "checksum mismatch")
	assert.Contains(t, r.stderr, "nothing was sent")
	requireOneLineError(t, runBinary(t, nil, lieurBin, "snapshot", "inspect", badFile), "checksum mismatch")
	for name, bad := range map[string][]byte{"checksum": damaged, "truncated": data[:len(data)/2], "newer format": bytes.Replace(data, []byte(`"format":1`), []byte(`"format":7`), 1)} {
		for _, i := range []int{followers[1], leader} {
			code, e := putSnapshot(t, c.nodes[i].url(), bad)
			assert.Equal(t, 400, code, "%s via %s: %s", name, c.nodes[i].id, e.Error)
			assert.Contains(t, e.Error, "snapshot refused")
		}
	}
	assert.Equal(t, moved, c.waitConverged(), "a refused restore changes no table")
	after, err := c.status(leader)
	require.NoError(t, err)
	assert.Equal(t, movedStatus.LastLogIndex, after.LastLogIndex, "nor writes anything to the log")

	// A binder down during the restore gets it when it catches up.
	c.kill(followers[0])
	out = lieurOK(t, c.nodes[followers[1]].url(), "snapshot", "restore", file)
	assert.Contains(t, out, "restored "+file+": 5 instances of 2 types at index ")
	c.restart(followers[0])
	c.waitReady()
	c.waitConverged()
	for i := range c.nodes {
		got := instancesAt(t, c, i)
		assert.Equal(t, saved, got, "%s holds the saved table", c.nodes[i].id)
		assert.NotContains(t, got, extra)
	}
	// The restored cluster takes writes as before.
	c.register(followers[0], "web", 21001)
	c.waitConverged()
}

// The survivor of a three-node cluster that lost two nodes for good is
// started with --recover-peers: it leads alone, serves every write, takes
// new ones, and a lost node comes back with a fresh data dir through
// --join. Started again with the flag still given, the survivor does not
// rewrite its configuration (which would drop the member that joined).
func TestRecoverPeersAfterLosingTheQuorum(t *testing.T) {
	c := startCluster(t, 3)
	var ids []string
	for i := 0; i < 6; i++ {
		ids = append(ids, c.register(i%3, "echo", 22000+i))
	}
	c.waitConverged()

	c.kill(1)
	c.kill(2)
	c.kill(0) // no quorum left: it is stopped to be recovered

	peers := filepath.Join(t.TempDir(), "peers.txt")
	require.NoError(t, os.WriteFile(peers, []byte("# the survivors\n"+c.nodes[0].id+"="+c.nodes[0].raftAddr+"\n"), 0o600))
	n1 := c.nodes[0]
	n1.args = append(n1.args, "--recover-peers", peers)
	c.restart(0)
	waitFor(t, 30*time.Second, "n1 to lead the recovered cluster", func() (bool, string) {
		st, err := c.status(0)
		if err != nil {
			return false, err.Error()
		}
		return st.State == "leader" && st.CaughtUp, fmt.Sprintf("%s, caught up %v", st.State, st.CaughtUp)
	})
	assert.Contains(t, c.logSinceStart(0), "recovered the cluster from a peers file")
	got := instancesAt(t, c, 0)
	for _, id := range ids {
		assert.Contains(t, got, id, "a write made before the quorum was lost")
	}
	ids = append(ids, c.register(0, "echo", 22100))

	// n2 lost its disk: it comes back empty, under its old id.
	require.NoError(t, os.RemoveAll(c.nodes[1].dataDir))
	c.startJoin(1, n1.url())
	c.waitReady()
	c.waitConverged()
	got = instancesAt(t, c, 1)
	for _, id := range ids {
		assert.Contains(t, got, id)
	}

	c.stop(0)
	c.restart(0) // --recover-peers still given
	assert.Contains(t, c.logSinceStart(0), "already applied")
	c.waitReady()
	var cl wire.ClusterResponse
	_, err := getJSON(n1.url()+"/v1/cluster", &cl)
	require.NoError(t, err)
	var members []string
	for _, m := range cl.Members {
		members = append(members, m.ID)
	}
	assert.ElementsMatch(t, []string{"n1", "n2"}, members, "the member that joined is still one")
	c.register(1, "echo", 22101)
	c.waitConverged()
	assert.False(t, strings.Contains(c.logSinceStart(0), "recovered the cluster from a peers file"))
}
