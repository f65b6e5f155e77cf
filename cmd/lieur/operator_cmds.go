package main

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lieur/lieur/client"
	"github.com/lieur/lieur/transport/wire"
)

// newOperatorCmd groups the commands that change who votes and who leads.
// Each goes to any binder; a follower forwards it to the leader.
func newOperatorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Read replicas, leadership and membership of the cluster's Raft configuration",
		Long: `Commands that change or show the cluster's Raft configuration. Any binder
takes them; a follower forwards changes to the leader. With --token-file on the
binders they need an admin token (--token or $LIEUR_TOKEN).`,
	}
	raft := &cobra.Command{Use: "raft", Short: "Show the Raft configuration"}
	raft.AddCommand(newListPeersCmd())
	cmd.AddCommand(newRoleCmd("promote", "Make a read replica (nonvoter) a voter", wire.RoleVoter),
		newRoleCmd("demote", "Make a voter a read replica (refused if the voters would lose their quorum or drop below three)", wire.RoleNonvoter),
		newTransferLeaderCmd(), newOperatorRemoveCmd(), raft)
	return cmd
}

func newRoleCmd(verb, short, role string) *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{Use: verb + " ID", Short: short, Args: cobra.ExactArgs(1)}
	cmd.RunE = f.run(func(cmd *cobra.Command, args []string, c *client.Client) error {
		ctx, cancel := ctxWithTimeout(cmd, f.timeout)
		defer cancel()
		change := c.Promote
		if verb == "demote" {
			change = c.Demote
		}
		if err := change(ctx, args[0]); err != nil {
			return err
		}
		if f.json {
			return printJSON(cmd.OutOrStdout(), map[string]string{"id": args[0], "role": role})
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s is a %s\n", args[0], role)
		return nil
	})
	f.add(cmd)
	return cmd
}

func newTransferLeaderCmd() *cobra.Command {
	var f clientFlags
	var to string
	cmd := &cobra.Command{
		Use:   "transfer-leader [--to ID]",
		Short: "Hand leadership to another voter (the most up-to-date one without --to)",
		Args:  cobra.NoArgs,
	}
	cmd.RunE = f.run(func(cmd *cobra.Command, _ []string, c *client.Client) error {
		if cmd.Flags().Changed("to") && to == "" {
			return fmt.Errorf("--to needs a server id")
		}
		ctx, cancel := ctxWithTimeout(cmd, f.timeout)
		defer cancel()
		leader, err := c.TransferLeader(ctx, to)
		if err != nil {
			return err
		}
		if f.json {
			return printJSON(cmd.OutOrStdout(), wire.TransferLeaderResponse{Leader: leader})
		}
		fmt.Fprintf(cmd.OutOrStdout(), "leader: %s\n", leader)
		return nil
	})
	f.add(cmd)
	cmd.Flags().StringVar(&to, "to", "", "the voter to hand leadership to")
	return cmd
}

func newOperatorRemoveCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a server from the cluster for good (refused for the leader, and when the voters left would lose their quorum)",
		Args:  cobra.ExactArgs(1),
	}
	cmd.RunE = f.run(func(cmd *cobra.Command, args []string, c *client.Client) error {
		ctx, cancel := ctxWithTimeout(cmd, f.timeout)
		defer cancel()
		if err := c.RemoveMember(ctx, args[0]); err != nil {
			return err
		}
		if f.json {
			return printJSON(cmd.OutOrStdout(), map[string]string{"removed": args[0]})
		}
		fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", args[0])
		return nil
	})
	f.add(cmd)
	return cmd
}

func newListPeersCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "list-peers",
		Short: "List the Raft configuration: each server's role, state, last contact and last index",
		Args:  cobra.NoArgs,
	}
	cmd.RunE = f.run(func(cmd *cobra.Command, _ []string, c *client.Client) error {
		ctx, cancel := ctxWithTimeout(cmd, f.timeout)
		defer cancel()
		resp, err := c.RaftPeers(ctx)
		if err != nil {
			return err
		}
		if f.json {
			return printJSON(cmd.OutOrStdout(), resp)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tADDRESS\tHTTP\tVOTER\tLEADER\tSTATE\tLAST CONTACT\tLAST INDEX\tUNHEARD")
		for _, p := range resp.Peers {
			contact, index := "-", "-"
			if p.Reachable {
				contact, index = formatContact(p.LastContactMs), strconv.FormatUint(p.LastIndex, 10)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%t\t%s\t%s\t%s\t%s\n", p.ID, p.RaftAddr, orDash(p.HTTPAddr), p.Voter, p.Leader,
				p.State, contact, index, formatUnheard(p.UnheardMs))
		}
		return tw.Flush()
	})
	f.add(cmd)
	return cmd
}

// formatContact renders a last_contact_ms: "never" for -1.
func formatContact(ms int64) string {
	if ms < 0 {
		return "never"
	}
	return (time.Duration(ms) * time.Millisecond).String()
}

// formatUnheard renders the leader's unheard time, "-" when it hears the
// server.
func formatUnheard(ms int64) string {
	if ms <= 0 {
		return "-"
	}
	return (time.Duration(ms) * time.Millisecond).Round(100 * time.Millisecond).String()
}
