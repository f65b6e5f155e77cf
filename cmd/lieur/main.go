// Command lieur is the binder: `lieur agent` runs a node, `lieur dev` a local
// cluster, and the other subcommands talk to a cluster over its HTTP API.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// version names this build: "dev" unless the build sets it
// (`go build -ldflags "-X main.version=1.4.0"`; `make build` uses git
// describe). `lieur --version` prints it and an agent logs it at start,
// so that a rolling upgrade can be followed node by node.
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lieur:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "lieur",
		Short:         "lieur, a Raft-replicated service binder",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.AddCommand(newAgentCmd(), newDevCmd(), newBenchCmd(), newTLSCmd(), newOperatorCmd(), newSnapshotCmd())
	addClientCommands(root)
	return root
}

func ctxWithTimeout(cmd *cobra.Command, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), d)
}
