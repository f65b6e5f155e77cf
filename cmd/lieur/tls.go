package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/lieur/lieur/transport/tlsutil"
)

func newTLSCmd() *cobra.Command {
	tlsCmd := &cobra.Command{Use: "tls", Short: "TLS helpers"}
	var hosts []string
	initCmd := &cobra.Command{
		Use:   "init DIR",
		Short: "Create a development CA, a node certificate and a client certificate in DIR",
		Long: `Create ca.pem, node.pem and client.pem (with their -key.pem) in DIR.
The node certificate is valid for 127.0.0.1, ::1, localhost and any --host.
For development and tests: production clusters give each node its own
certificate from their own CA.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := tlsutil.InitDev(args[0], hosts...); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote ca.pem, node.pem, client.pem and their keys to %s\n", args[0])
			return nil
		},
	}
	initCmd.Flags().StringSliceVar(&hosts, "host", nil, "extra host name or IP for the node certificate, repeatable")
	tlsCmd.AddCommand(initCmd)
	return tlsCmd
}
