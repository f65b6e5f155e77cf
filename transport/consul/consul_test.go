package consul_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/consul"
	"github.com/lieur/lieur/transport/httpapi"
	"github.com/lieur/lieur/transport/raftnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// binderUnderTest is a real one-node cluster (real Raft, bbolt files and
// TCP) serving lieur's API and the Consul views on one port, mounted as
// the agent mounts them.
type binderUnderTest struct {
	node     *binder.Node
	url      string // http://host:port
	addr     string // host:port, as CONSUL_HTTP_ADDR takes it
	raftAddr string
}

func newBinder(t *testing.T, auth *httpapi.Auth) *binderUnderTest {
	t.Helper()
	stream, err := raftnet.Listen("127.0.0.1:0", "")
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	peer := httpapi.NewPeerClient()
	node, err := binder.New(binder.Config{
		ID: "n1", HTTPAddr: ln.Addr().String(), DataDir: t.TempDir(),
		Peers:  []binder.PeerAddr{{ID: "n1", RaftAddr: stream.Addr().String()}},
		Stream: stream, Peer: peer,
	})
	require.NoError(t, err)
	lieurAPI := httpapi.NewServer(node, nil, httpapi.WithAuth(auth))
	consulAPI, err := consul.NewServer(node, consul.Config{}, nil, consul.WithAuth(auth))
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if consul.Owns(r.URL.Path) {
			consulAPI.ServeHTTP(w, r)
			return
		}
		lieurAPI.ServeHTTP(w, r)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = node.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = node.Close()
		srv.CloseClientConnections()
		srv.Close()
		peer.Close()
	})
	// Tags, weights and checks need log format 3, which a single node
	// reaches once it has announced itself.
	eventually(t, "the node to lead, catch up and reach log format 3", func() bool {
		return node.IsLeader() && node.CaughtUp() && node.ClusterID() != "" && node.Status().LogFormat >= 3
	})
	return &binderUnderTest{node: node, url: srv.URL, addr: ln.Addr().String(), raftAddr: stream.Addr().String()}
}

// client is the real Consul Go client pointed at the binder, as
// CONSUL_HTTP_ADDR would point it. Non-pooled: no idle connection
// outlives a test (goleak).
func (b *binderUnderTest) client(t *testing.T, token string) *api.Client {
	t.Helper()
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = b.addr
	cfg.Token = token
	c, err := api.NewClient(cfg)
	require.NoError(t, err)
	return c
}

// eventually polls cond until it holds, failing after 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "timed out waiting for %s", what)
		time.Sleep(10 * time.Millisecond)
	}
}

// statusErr asserts err is the Go client's StatusError with that code and
// a body containing want.
func statusErr(t *testing.T, err error, code int, want string) {
	t.Helper()
	require.Error(t, err)
	var se api.StatusError
	require.ErrorAs(t, err, &se, "a status error, got %v", err)
	require.Equal(t, code, se.Code, "status of %v", err)
	var body struct{ Error string }
	require.NoError(t, json.Unmarshal([]byte(se.Body), &body), "a JSON body: %s", se.Body)
	require.Contains(t, body.Error, want)
	// The client shows the body as the message: it reads well.
	require.True(t, strings.HasPrefix(err.Error(), "Unexpected response code: "), err.Error())
}

func ttlService(id, name, address string, port int, tags ...string) *api.AgentServiceRegistration {
	return &api.AgentServiceRegistration{ID: id, Name: name, Address: address, Port: port, Tags: tags,
		Meta:  map[string]string{"version": "1.2"},
		Check: &api.AgentServiceCheck{TTL: "1m"}}
}
