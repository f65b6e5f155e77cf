package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lieur/lieur/client"
	"github.com/lieur/lieur/transport/tlsutil"
	"github.com/lieur/lieur/transport/wire"
)

// clientFlags are shared by every command that talks to a cluster.
type clientFlags struct {
	binders string
	token   string
	ca      string
	cert    string
	key     string
	json    bool
	timeout time.Duration
}

func (f *clientFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.binders, "binders", os.Getenv("LIEUR_BINDERS"), "binder URLs, comma-separated (default $LIEUR_BINDERS)")
	cmd.Flags().BoolVar(&f.json, "json", false, "print JSON for scripts")
	cmd.Flags().StringVar(&f.token, "token", os.Getenv("LIEUR_TOKEN"), "token for binders that require one (default $LIEUR_TOKEN)")
	cmd.Flags().StringVar(&f.ca, "ca", os.Getenv("LIEUR_CA"), "CA certificate (PEM) to trust for https:// binders (default $LIEUR_CA)")
	cmd.Flags().StringVar(&f.cert, "cert", "", "client certificate (PEM), for binders that check one")
	cmd.Flags().StringVar(&f.key, "key", "", "the client certificate's key (PEM)")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 10*time.Second, "give up after this long")
}

func (f *clientFlags) client() (*client.Client, error) {
	if f.binders == "" {
		return nil, errors.New("no binders: set --binders or $LIEUR_BINDERS")
	}
	cfg := client.Config{Binders: strings.Split(f.binders, ","), Token: f.token}
	if f.ca != "" || f.cert != "" {
		t, err := tlsutil.ClientConfig(f.ca, f.cert, f.key)
		if err != nil {
			return nil, err
		}
		cfg.TLS = t
	}
	return client.New(cfg)
}

// run wraps a client command: it builds the client and bounds the call.
func (f *clientFlags) run(fn func(cmd *cobra.Command, args []string, c *client.Client) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := f.client()
		if err != nil {
			return err
		}
		defer c.Close()
		return fn(cmd, args, c)
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func wireInstance(i client.Instance) wire.Instance {
	meta := i.Meta
	if meta == nil {
		meta = map[string]string{}
	}
	return wire.Instance{ID: i.ID, Type: i.Type, Address: i.Address, Port: i.Port, Meta: meta, Status: i.Status, Tags: i.Tags}
}

func addClientCommands(root *cobra.Command) {
	root.AddCommand(newRegisterCmd(), newDeregisterCmd(), newLookupCmd(), newServicesCmd(),
		newReportCmd(), newMembersCmd(), newStatusCmd())
}

func newRegisterCmd() *cobra.Command {
	var f clientFlags
	var reg client.Registration
	var meta []string
	cmd := &cobra.Command{
		Use:   "register --type T --address A --port P [--id ID]",
		Short: "Register a service instance",
		Args:  cobra.NoArgs,
	}
	cmd.RunE = f.run(func(cmd *cobra.Command, _ []string, c *client.Client) error {
		for _, kv := range meta {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("--meta %q is not key=value", kv)
			}
			if reg.Meta == nil {
				reg.Meta = map[string]string{}
			}
			reg.Meta[k] = v
		}
		ctx, cancel := ctxWithTimeout(cmd, f.timeout)
		defer cancel()
		if reg.TTL > 0 {
			reg.OnLease = func(s client.LeaseState, err error) {
				if s != client.LeaseActive && s != client.LeaseClosed {
					fmt.Fprintf(cmd.ErrOrStderr(), "lieur: lease %s %v\n", s, err)
				}
			}
		}
		r, err := c.Register(ctx, reg)
		if err != nil {
			return err
		}
		if f.json {
			if err := printJSON(cmd.OutOrStdout(), wire.RegisterResponse{ID: r.ID(), Index: r.Index()}); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(cmd.OutOrStdout(), "registered %s (index %d)\n", r.ID(), r.Index())
		}
		if reg.TTL == 0 {
			return nil
		}
		// A lease lives as long as this command: heartbeat until
		// interrupted, then deregister.
		<-cmd.Context().Done()
		cctx, ccancel := context.WithTimeout(context.Background(), f.timeout)
		defer ccancel()
		return r.Close(cctx)
	})
	f.add(cmd)
	cmd.Flags().StringVar(&reg.Type, "type", "", "service type (a DNS label)")
	cmd.Flags().StringVar(&reg.Address, "address", "", "IP address or host name of the instance")
	cmd.Flags().IntVar(&reg.Port, "port", 0, "port of the instance")
	cmd.Flags().StringVar(&reg.ID, "id", "", "instance id (default <type>-<address>-<port>)")
	cmd.Flags().StringSliceVar(&meta, "meta", nil, "metadata as key=value, repeatable")
	cmd.Flags().DurationVar(&reg.TTL, "ttl", 0, "make it a lease (1s to 1h): heartbeat every ttl/3 until interrupted, then deregister")
	for _, name := range []string{"type", "address", "port"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

func newDeregisterCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{Use: "deregister ID", Short: "Remove a service instance", Args: cobra.ExactArgs(1)}
	cmd.RunE = f.run(func(cmd *cobra.Command, args []string, c *client.Client) error {
		ctx, cancel := ctxWithTimeout(cmd, f.timeout)
		defer cancel()
		idx, err := c.Deregister(ctx, args[0])
		if err != nil {
			return err
		}
		if f.json {
			return printJSON(cmd.OutOrStdout(), wire.IndexResponse{Index: idx})
		}
		fmt.Fprintf(cmd.OutOrStdout(), "deregistered %s (index %d)\n", args[0], idx)
		return nil
	})
	f.add(cmd)
	return cmd
}

func newLookupCmd() *cobra.Command {
	var f clientFlags
	var wait time.Duration
	cmd := &cobra.Command{Use: "lookup TYPE", Short: "Ask for one instance of a type (round-robin)", Args: cobra.ExactArgs(1)}
	cmd.RunE = f.run(func(cmd *cobra.Command, args []string, c *client.Client) error {
		ctx, cancel := ctxWithTimeout(cmd, f.timeout+wait)
		defer cancel()
		var inst client.Instance
		var err error
		if wait > 0 {
			inst, err = c.ResolveWait(ctx, args[0], wait)
		} else {
			inst, err = c.Lookup(ctx, args[0])
		}
		if err != nil {
			return err
		}
		if f.json {
			return printJSON(cmd.OutOrStdout(), wireInstance(inst))
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", inst.ID, inst.Addr())
		return nil
	})
	f.add(cmd)
	cmd.Flags().DurationVar(&wait, "wait", 0, "when the type is unknown, wait this long for an instance")
	return cmd
}

func newServicesCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{Use: "services [TYPE]", Short: "List instances, of every type or of one", Args: cobra.MaximumNArgs(1)}
	cmd.RunE = f.run(func(cmd *cobra.Command, args []string, c *client.Client) error {
		ctx, cancel := ctxWithTimeout(cmd, f.timeout)
		defer cancel()
		var list []client.Instance
		var err error
		if len(args) == 1 {
			list, _, err = c.ServicesOf(ctx, args[0])
		} else {
			list, _, err = c.Services(ctx)
		}
		if err != nil {
			return err
		}
		if f.json {
			resp := wire.ServicesResponse{Services: []wire.Instance{}}
			for _, i := range list {
				resp.Services = append(resp.Services, wireInstance(i))
			}
			return printJSON(cmd.OutOrStdout(), resp)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TYPE\tID\tADDRESS\tSTATUS\tTAGS\tMETA")
		for _, i := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", i.Type, i.ID, i.Addr(), orDash(i.Status), orDash(strings.Join(i.Tags, ",")), orDash(formatMeta(i.Meta)))
		}
		return tw.Flush()
	})
	f.add(cmd)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func formatMeta(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func newReportCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "report ID",
		Short: "Report an instance unreachable; the binder verifies it and removes it if down",
		Args:  cobra.ExactArgs(1),
	}
	cmd.RunE = f.run(func(cmd *cobra.Command, args []string, c *client.Client) error {
		ctx, cancel := ctxWithTimeout(cmd, f.timeout)
		defer cancel()
		verdict, err := c.ReportDown(ctx, client.Instance{ID: args[0]})
		if err != nil {
			return err
		}
		if f.json {
			return printJSON(cmd.OutOrStdout(), wire.ReportResponse{ID: args[0], Verdict: verdict})
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", args[0], verdict)
		return nil
	})
	f.add(cmd)
	return cmd
}

func newMembersCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{Use: "members", Short: "List the cluster's binders and their state", Args: cobra.NoArgs}
	cmd.RunE = f.run(func(cmd *cobra.Command, _ []string, c *client.Client) error {
		ctx, cancel := ctxWithTimeout(cmd, f.timeout)
		defer cancel()
		cl, err := c.Cluster(ctx)
		if err != nil {
			return err
		}
		if f.json {
			return printJSON(cmd.OutOrStdout(), cl)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		// UNHEARD: how long the leader has not heard from a server over
		// Raft (what --cleanup-dead-after acts on); "-" while it does.
		fmt.Fprintln(tw, "ID\tSTATE\tRAFT\tHTTP\tROLE\tUNHEARD")
		for _, m := range cl.Members {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.State, m.RaftAddr, m.HTTPAddr, orDash(m.Role), formatUnheard(m.UnheardMs))
		}
		return tw.Flush()
	})
	f.add(cmd)
	return cmd
}

func newStatusCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every listed binder's own view: state, leader, indexes, table hash",
		Args:  cobra.NoArgs,
	}
	cmd.RunE = f.run(func(cmd *cobra.Command, _ []string, c *client.Client) error {
		ctx, cancel := ctxWithTimeout(cmd, f.timeout)
		defer cancel()
		type row struct {
			Binder string       `json:"binder"`
			Status *wire.Status `json:"status,omitempty"`
			Error  string       `json:"error,omitempty"`
		}
		var rows []row
		failed := 0
		for _, b := range c.Binders() {
			st, err := c.StatusOf(ctx, b)
			if err != nil {
				rows = append(rows, row{Binder: b, Error: err.Error()})
				failed++
				continue
			}
			rows = append(rows, row{Binder: b, Status: &st})
		}
		if f.json {
			if err := printJSON(cmd.OutOrStdout(), rows); err != nil {
				return err
			}
		} else {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "BINDER\tID\tSTATE\tLEADER\tTERM\tAPPLIED\tLAST LOG\tLAST CONTACT\tCAUGHT UP\tSERVICES\tTABLE HASH")
			for _, r := range rows {
				if r.Status == nil {
					fmt.Fprintf(tw, "%s\t-\tunreachable\t-\t-\t-\t-\t-\t-\t-\t%s\n", r.Binder, r.Error)
					continue
				}
				s := r.Status
				contact := "never"
				if s.LastContactMs >= 0 {
					contact = fmt.Sprintf("%dms", s.LastContactMs)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%t\t%d\t%.12s\n", r.Binder, s.ID, s.State, s.Leader, s.Term, s.AppliedIndex, s.LastLogIndex, contact, s.CaughtUp, s.Services, s.TableHash)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		if failed == len(rows) {
			return fmt.Errorf("no binder answered")
		}
		return nil
	})
	f.add(cmd)
	return cmd
}
