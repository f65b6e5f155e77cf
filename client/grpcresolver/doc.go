// Package grpcresolver lets a gRPC client dial a lieur service type: it is
// a gRPC name resolver (resolver.Builder) for the "lieur" scheme, over the
// Go client of package client, and an optional load-balancing policy that
// reports unreachable instances to the binders.
//
// # Dialing
//
//	b, err := grpcresolver.NewBuilder(client.Config{Binders: binders}, grpcresolver.WithDownReports())
//	conn, err := grpc.NewClient("lieur:///echo", grpc.WithResolvers(b),
//		grpc.WithTransportCredentials(insecure.NewCredentials()))
//
// Targets are "lieur:///TYPE", which asks the binders of the Config given
// to NewBuilder, and "lieur://HOST:PORT,HOST:PORT/TYPE", which asks the
// binders named in the authority instead (https when that Config has TLS
// set or names https:// binders, http otherwise); every other setting of
// the Config (token, TLS, HTTP client, timeouts) applies to both forms.
// TYPE is a service type, a DNS label. A target that names no type, an
// invalid type or a malformed binder list fails Build, so grpc.NewClient's
// first RPC fails with that error.
//
// # What the resolver sends to gRPC
//
// Each resolver lists the type once, then follows it with blocking
// queries, and calls ClientConn.UpdateState with the whole set of
// instances whenever it changes: one resolver.Endpoint (and one
// resolver.Address) per instance, at its registered address:port,
// carrying the instance's id and type (see InstanceOf). Like lieur's
// lookups it offers the passing instances, else the warning ones, never
// critical ones. A type with no such instance gives an empty state, so
// with round_robin RPCs that do not wait for ready fail with Unavailable
// and grpc.WaitForReady(true) RPCs wait until an instance is registered.
//
// When the binders cannot be reached or refuse the read, the resolver
// calls ClientConn.ReportError, keeps the last set it sent (it never sends
// an empty set because of an error) and lists the type again with a
// backoff of up to about a second. ResolveNow, which gRPC calls when a
// connection fails, lists the type again at once (at most about twice a
// second). Close stops every goroutine of the resolver before it returns;
// a down-report already sent to a binder gets up to two seconds to finish
// first, so that a short-lived client's reports are not lost.
//
// # Service config and load balancing
//
// The resolver sends a service config that selects round_robin, or, with
// WithDownReports, the "lieur_down_reports" policy around round_robin.
// WithServiceConfig replaces it. gRPC uses a resolver's service config in
// preference to grpc.WithDefaultServiceConfig, so:
//
//   - without any option the resolver's round_robin wins over
//     grpc.WithDefaultServiceConfig;
//   - WithServiceConfig(json) is the way to choose another policy, a retry
//     policy or method configs and keep them with the resolver;
//   - WithoutServiceConfig makes the resolver send none, so
//     grpc.WithDefaultServiceConfig applies (or gRPC's pick_first when the
//     dial has none either);
//   - grpc.WithDisableServiceConfig() on the dial makes gRPC ignore the
//     resolver's config and use grpc.WithDefaultServiceConfig; it wins over
//     everything here.
//
// # Down-reports
//
// With WithDownReports the resolver hands gRPC a reporter along with each
// state, and the "lieur_down_reports" balancer (registered by this
// package; its config is {"childPolicy":[{"round_robin":{}}]}, any
// registered child policy may be named, round_robin by default) watches
// every connection its child policy makes. When a connection to an
// instance fails (TRANSIENT_FAILURE), the instance is reported with
// client.(*Client).ReportDown: the binder probes it and removes it only if
// it does not answer, and the resolver's blocking query then drops it from
// every client's set. A live instance stays. Reports run in their own
// goroutines (never on gRPC's balancer goroutine), at most four at once,
// and are de-duplicated: one report per instance per failure episode (an
// episode ends when a connection to the instance becomes READY), and a
// report that failed or got the verdict "unknown" is tried again at the
// next connection failure, at most once every five seconds per instance.
package grpcresolver
