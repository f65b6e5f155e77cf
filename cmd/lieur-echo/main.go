// Command lieur-echo is lieur's example application: `serve` runs a TCP echo
// server that registers with the binders at start-up and deregisters when
// stopped; `call` finds a server through the binders and calls it directly,
// reporting an unreachable server and trying the next. `grpc-serve` and
// `grpc-call` do the same over gRPC (grpc.go): a health server that names
// the instance that answered, and a client that dials lieur:///TYPE through
// package client/grpcresolver.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lieur/lieur/client"
	"github.com/lieur/lieur/transport/tlsutil"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lieur-echo:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	var binders, token, ca string
	root := &cobra.Command{
		Use:           "lieur-echo",
		Short:         "Example application server and client for lieur",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&binders, "binders", os.Getenv("LIEUR_BINDERS"), "binder URLs, comma-separated (default $LIEUR_BINDERS)")
	root.PersistentFlags().StringVar(&ca, "ca", os.Getenv("LIEUR_CA"), "CA certificate (PEM) to trust for https:// binders (default $LIEUR_CA)")
	root.PersistentFlags().StringVar(&token, "token", os.Getenv("LIEUR_TOKEN"), "token for binders that require one (default $LIEUR_TOKEN)")
	newConfig := func() (client.Config, error) {
		if binders == "" {
			return client.Config{}, errors.New("no binders: set --binders or $LIEUR_BINDERS")
		}
		cfg := client.Config{Binders: strings.Split(binders, ","), Token: token}
		if ca != "" {
			t, err := tlsutil.ClientConfig(ca, "", "")
			if err != nil {
				return client.Config{}, err
			}
			cfg.TLS = t
		}
		return cfg, nil
	}
	newClient := func() (*client.Client, error) {
		cfg, err := newConfig()
		if err != nil {
			return nil, err
		}
		return client.New(cfg)
	}
	root.AddCommand(newServeCmd(newClient), newCallCmd(newClient),
		newGRPCServeCmd(newClient), newGRPCCallCmd(newConfig))
	return root
}

func newServeCmd(newClient func() (*client.Client, error)) *cobra.Command {
	var typ, address, id string
	var port int
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a TCP echo server registered with the binders",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			defer c.Close()
			ln, err := net.Listen("tcp", net.JoinHostPort(address, fmt.Sprint(port)))
			if err != nil {
				return err
			}
			defer ln.Close()
			go serveEcho(ln)
			actual := ln.Addr().(*net.TCPAddr).Port
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
				return fmt.Errorf("register: %w", err)
			}
			fmt.Printf("lieur-echo: serving type=%s addr=%s id=%s\n", typ, net.JoinHostPort(address, fmt.Sprint(actual)), reg.ID())
			<-ctx.Done()
			closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := reg.Close(closeCtx); err != nil {
				return fmt.Errorf("deregister %s: %w", reg.ID(), err)
			}
			fmt.Printf("lieur-echo: deregistered %s\n", reg.ID())
			return nil
		},
	}
	instanceFlags(cmd, &typ, &address, &id, &port, &ttl)
	return cmd
}

// instanceFlags are the flags of a server that registers itself: serve
// and grpc-serve take the same.
func instanceFlags(cmd *cobra.Command, typ, address, id *string, port *int, ttl *time.Duration) {
	cmd.Flags().StringVar(typ, "type", "echo", "service type to register")
	cmd.Flags().StringVar(address, "address", "127.0.0.1", "address to listen on and register")
	cmd.Flags().IntVar(port, "port", 0, "port to listen on (0: any free port)")
	cmd.Flags().StringVar(id, "id", "", "instance id (default <type>-<address>-<port>)")
	cmd.Flags().DurationVar(ttl, "ttl", 10*time.Second, "lease renewed by heartbeats every ttl/3; 0 registers without a lease")
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// serveEcho sends every line back to its sender.
func serveEcho(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(time.Minute))
			_, _ = io.Copy(conn, conn)
		}()
	}
}

func newCallCmd(newClient func() (*client.Client, error)) *cobra.Command {
	var typ string
	var count, attempts int
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "call MESSAGE",
		Short: "Call an echo server found through the binders and print its answer",
		Long: `Resolve a server of the type through the binders (once; later calls use the
cached address), send MESSAGE and print the echo. A server that cannot be
reached is reported down to the binders, and the next one is tried.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			defer c.Close()
			for i := 0; i < count; i++ {
				reply, err := callOnce(cmd.Context(), c, typ, args[0], attempts, wait)
				if err != nil {
					return err
				}
				fmt.Println(reply)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&typ, "type", "echo", "service type to call")
	cmd.Flags().IntVar(&count, "count", 1, "number of calls (the address is resolved once)")
	cmd.Flags().IntVar(&attempts, "attempts", 3, "servers to try per call before giving up")
	cmd.Flags().DurationVar(&wait, "wait", 0, "when no server of the type exists, wait this long for one")
	return cmd
}

func callOnce(ctx context.Context, c *client.Client, typ, msg string, attempts int, wait time.Duration) (string, error) {
	var last error
	for a := 0; a < attempts; a++ {
		inst, err := c.ResolveWait(ctx, typ, wait)
		if err != nil {
			return "", err
		}
		reply, err := echo(ctx, inst.Addr(), msg)
		if err == nil {
			return reply, nil
		}
		last = err
		verdict, rerr := c.ReportDown(ctx, inst)
		if rerr != nil {
			fmt.Fprintf(os.Stderr, "lieur-echo: %s unreachable (%v); report failed: %v\n", inst.ID, err, rerr)
		} else {
			fmt.Fprintf(os.Stderr, "lieur-echo: %s unreachable (%v); reported, verdict %s\n", inst.ID, err, verdict)
		}
	}
	return "", fmt.Errorf("no %s server answered after %d attempts: %w", typ, attempts, last)
}

func echo(ctx context.Context, addr, msg string) (string, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "%s\n", msg); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(line, "\n"), nil
}
