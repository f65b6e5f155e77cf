// Package transport is everything lieur puts on the wire. Its subpackages:
//
//   - wire: the JSON types of the HTTP API, version 1, shared by the server
//     and the Go client (and nothing else, so the client stays small);
//   - httpapi: the HTTP server in front of a binder node, and the HTTP client
//     a node uses to forward writes to the leader and to join a cluster;
//   - raftnet: the TCP stream layer that carries Raft traffic between nodes.
package transport
