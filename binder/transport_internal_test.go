package binder

import (
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/transport/raftnet"
)

// Raft's pipelined appends (v1.8.0, default depth) can wedge a follower's
// replication for good after a refused append; the transport must not
// offer them, so that raft replicates one append at a time.
func TestRaftTransportOffersNoPipeline(t *testing.T) {
	stream, err := raftnet.Listen("127.0.0.1:0", "")
	require.NoError(t, err)
	trans := raftTransport(Config{Stream: stream, Logger: hclog.NewNullLogger()})
	defer trans.Close()
	_, err = trans.AppendEntriesPipeline("n2", "127.0.0.1:1")
	assert.ErrorIs(t, err, raft.ErrPipelineReplicationNotSupported)
}
