package main

// The gRPC mode of lieur-echo. `grpc-serve` runs a gRPC server with the
// standard health service (grpc.health.v1.Health, no protos of our own)
// and registers it with the binders; every answer carries the instance's
// id in the "lieur-instance" response header. `grpc-call` dials
// lieur:///TYPE through package client/grpcresolver (round_robin, with
// unreachable instances reported to the binders) and prints, for each
// call, the id of the instance that answered.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/lieur/lieur/client"
	"github.com/lieur/lieur/client/grpcresolver"
)

// instanceHeader is the response header that names the instance that
// answered.
const instanceHeader = "lieur-instance"

// callServiceConfig is what grpc-call asks of gRPC: round_robin with
// down-reports, and, for the health service's calls (idempotent), waiting
// for a ready connection and retrying the calls a dying server failed
// after they were sent (waiting for ready does not cover those).
const callServiceConfig = `{
  "loadBalancingConfig": [{"` + grpcresolver.BalancerName + `": {"childPolicy": [{"round_robin": {}}]}}],
  "methodConfig": [{
    "name": [{"service": "grpc.health.v1.Health"}],
    "waitForReady": true,
    "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.05s", "maxBackoff": "1s",
      "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}
  }]
}`

func newGRPCServeCmd(newClient func() (*client.Client, error)) *cobra.Command {
	var typ, address, id string
	var port int
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "grpc-serve",
		Short: "Run a gRPC health server registered with the binders",
		Long: `Run a gRPC server with the standard health service (grpc.health.v1.Health:
status SERVING for "" and for the type), registered with the binders like
serve. Every answer carries the instance's id in the "` + instanceHeader + `" response
header, so a client can tell which instance answered. On SIGTERM/SIGINT it
turns NOT_SERVING, deregisters and stops gracefully.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			defer c.Close()
			ln, err := net.Listen("tcp", net.JoinHostPort(address, strconv.Itoa(port)))
			if err != nil {
				return err
			}
			actual := ln.Addr().(*net.TCPAddr).Port

			// Connections wait in the listen queue until Serve, which starts
			// once the id the header carries is known.
			var served atomic.Value
			served.Store("")
			setHeader := func(ctx context.Context) {
				_ = grpc.SetHeader(ctx, metadata.Pairs(instanceHeader, served.Load().(string)))
			}
			srv := grpc.NewServer(
				grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
					setHeader(ctx)
					return h(ctx, req)
				}),
				grpc.StreamInterceptor(func(s any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
					setHeader(ss.Context())
					return h(s, ss)
				}),
			)
			hs := health.NewServer()
			hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			hs.SetServingStatus(typ, healthpb.HealthCheckResponse_SERVING)
			healthpb.RegisterHealthServer(srv, hs)

			ctx := cmd.Context()
			regCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
			reg, err := c.Register(regCtx, client.Registration{Type: typ, Address: address, Port: actual, ID: id, TTL: ttl,
				OnLease: func(s client.LeaseState, err error) {
					if s != client.LeaseActive && s != client.LeaseClosed {
						fmt.Fprintf(os.Stderr, "lieur-echo: lease %s %v\n", s, errOrEmpty(err))
					}
				}})
			cancel()
			if err != nil {
				ln.Close()
				return fmt.Errorf("register: %w", err)
			}
			served.Store(reg.ID())
			serveErr := make(chan error, 1)
			go func() { serveErr <- srv.Serve(ln) }()
			fmt.Printf("lieur-echo: grpc serving type=%s addr=%s id=%s\n", typ, net.JoinHostPort(address, strconv.Itoa(actual)), reg.ID())

			select {
			case <-ctx.Done():
			case err := <-serveErr:
				srv.Stop()
				closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = reg.Close(closeCtx)
				return fmt.Errorf("serve: %w", err)
			}
			hs.Shutdown()
			closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			derr := reg.Close(closeCtx)
			stopGracefully(srv, 5*time.Second)
			if derr != nil {
				return fmt.Errorf("deregister %s: %w", reg.ID(), derr)
			}
			fmt.Printf("lieur-echo: deregistered %s\n", reg.ID())
			return nil
		},
	}
	instanceFlags(cmd, &typ, &address, &id, &port, &ttl)
	return cmd
}

// stopGracefully lets the calls under way finish, for at most d.
func stopGracefully(srv *grpc.Server, d time.Duration) {
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		srv.Stop()
		<-done
	}
}

func newGRPCCallCmd(newConfig func() (client.Config, error)) *cobra.Command {
	var typ string
	var count int
	var timeout, interval time.Duration
	cmd := &cobra.Command{
		Use:   "grpc-call",
		Short: "Call gRPC health servers found through the binders and print which answered",
		Long: `Dial lieur:///TYPE through the lieur gRPC resolver (round_robin over the
type's instances, followed with blocking queries) and make --count health
checks, printing for each the id of the instance that answered. A server
whose connection fails is reported down to the binders (the binder checks
before removing it; each report is printed on stderr). Calls wait for a
ready server and are retried when a server dies under them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := newConfig()
			if err != nil {
				return err
			}
			b, err := grpcresolver.NewBuilder(cfg,
				grpcresolver.WithDownReports(),
				grpcresolver.WithServiceConfig(callServiceConfig),
				grpcresolver.WithOnDownReport(func(d grpcresolver.DownReport) {
					if d.Err != nil {
						fmt.Fprintf(os.Stderr, "lieur-echo: %s (%s) unreachable (%v); report failed: %v\n", d.ID, d.Addr, d.Cause, d.Err)
						return
					}
					fmt.Fprintf(os.Stderr, "lieur-echo: %s (%s) unreachable (%v); reported, verdict %s\n", d.ID, d.Addr, d.Cause, d.Verdict)
				}))
			if err != nil {
				return err
			}
			conn, err := grpc.NewClient(grpcresolver.Scheme+":///"+typ, grpc.WithResolvers(b),
				grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return err
			}
			defer conn.Close()
			hc := healthpb.NewHealthClient(conn)
			for i := 0; i < count; i++ {
				if i > 0 && interval > 0 {
					select {
					case <-time.After(interval):
					case <-cmd.Context().Done():
						return cmd.Context().Err()
					}
				}
				id, err := checkOnce(cmd.Context(), hc, timeout)
				if err != nil {
					return fmt.Errorf("call %d of %d: %w", i+1, count, err)
				}
				fmt.Println(id)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&typ, "type", "echo", "service type to call")
	cmd.Flags().IntVar(&count, "count", 1, "number of calls (over one connection per instance)")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "bound on each call, waiting for a server included")
	cmd.Flags().DurationVar(&interval, "interval", 0, "pause between calls")
	return cmd
}

// checkOnce makes one health check and returns the id of the instance that
// answered.
func checkOnce(ctx context.Context, hc healthpb.HealthClient, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var md metadata.MD
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md)); err != nil {
		return "", err
	}
	ids := md.Get(instanceHeader)
	if len(ids) != 1 || ids[0] == "" {
		return "", errors.New("the answer names no instance (is it a lieur-echo grpc-serve?)")
	}
	return ids[0], nil
}
