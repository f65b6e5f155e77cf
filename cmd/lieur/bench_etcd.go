package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdNativeLoad drives etcd the way its users do, with its own Go client
// (gRPC): registration = Put of /services/<type>/<id> with a small JSON
// value; lookup = a serializable Get of the /services/<type>/ prefix (3
// instances). Like the HTTP targets, each worker has its own client, so
// its own connection, to node w mod the number of nodes; shared, the
// workers of a node share one client (one HTTP/2 connection, as one
// process of etcd's users would).
type etcdNativeLoad struct {
	endpoints []string
	conns     []*clientv3.Client
}

func newEtcdNativeLoad(endpoints []string, clients int, shared bool) (*etcdNativeLoad, error) {
	e := &etcdNativeLoad{endpoints: endpoints}
	n := max(clients, 1)
	if shared {
		n = min(n, len(endpoints))
	}
	for w := 0; w < n; w++ {
		c, err := e.dial(endpoints[w%len(endpoints)])
		if err != nil {
			e.close()
			return nil, err
		}
		e.conns = append(e.conns, c)
	}
	return e, nil
}

func (e *etcdNativeLoad) dial(endpoint string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{strings.TrimPrefix(endpoint, "http://")},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
}

func (e *etcdNativeLoad) close() {
	for _, c := range e.conns {
		_ = c.Close()
	}
	e.conns = nil
}

func (e *etcdNativeLoad) setup(ctx context.Context, typ string) error {
	c := e.conns[0]
	for i := 0; i < 3; i++ {
		id := fmt.Sprintf("%s-%d", typ, i)
		if _, err := c.Put(ctx, "/services/"+typ+"/"+id, etcdValue(id, typ, 40000+i)); err != nil {
			return err
		}
	}
	return nil
}

func (e *etcdNativeLoad) register(ctx context.Context, _ *http.Client, w int, typ string, seq int) error {
	id := fmt.Sprintf("bench-%s-%d", benchRun, seq)
	_, err := e.conns[w%len(e.conns)].Put(ctx, "/services/"+typ+"/"+id, etcdValue(id, typ, 1+seq%65535))
	return err
}

func (e *etcdNativeLoad) lookup(ctx context.Context, _ *http.Client, w int, typ string) error {
	resp, err := e.conns[w%len(e.conns)].Get(ctx, "/services/"+typ+"/", clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		return err
	}
	if resp.Count != 3 || len(resp.Kvs) != 3 {
		return fmt.Errorf("etcd get returned %d keys, want 3", resp.Count)
	}
	return nil
}
