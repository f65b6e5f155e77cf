// Package consul serves the part of Consul's HTTP API that service
// discovery clients use (agent services and checks, catalog, health,
// status) over a binder, in Consul's shapes, field names and status codes,
// so that github.com/hashicorp/consul/api, python-consul, Prometheus'
// Consul discovery and consul watches work against a binder unchanged.
//
// It knows a node only through the Binder interface it declares. Every
// error is a JSON body {"error": "..."}: Consul's own clients read any
// body as the message. docs/consul.md maps Consul's notions onto lieur's.
package consul
