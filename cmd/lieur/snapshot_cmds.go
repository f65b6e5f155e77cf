package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/client"
)

// `lieur snapshot save|inspect|restore`: backups of the table
// (docs/operations.md, "Backup and restore"). The file format is
// binder/backupfile.go's; save and restore go through the Go client.

func newSnapshotCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Back up the service table, inspect a backup, restore one",
		Long: `Back up the service table to a file, inspect a backup file, or restore one.

A backup is taken on the leader, whichever binder is asked, and holds every
write acknowledged before it. A restore replaces the table on every binder
through the Raft log; every lease starts afresh. Both need an admin token
when the binders require tokens.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newSnapshotSaveCmd(), newSnapshotInspectCmd(), newSnapshotRestoreCmd())
	return cmd
}

func newSnapshotSaveCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:     "save FILE",
		Short:   "Write a backup of the table to FILE (atomically)",
		Example: "  lieur snapshot save /var/backups/lieur-$(date +%F).snap",
		Args:    cobra.ExactArgs(1),
	}
	cmd.RunE = f.run(func(cmd *cobra.Command, args []string, c *client.Client) error {
		ctx, cancel := ctxWithTimeout(cmd, f.timeout)
		defer cancel()
		file, err := c.SaveSnapshot(ctx)
		if err != nil {
			return err
		}
		info, err := binder.SaveSnapshotFile(args[0], file)
		if err != nil {
			return fmt.Errorf("%s not written: %w", args[0], err)
		}
		if f.json {
			return printJSON(cmd.OutOrStdout(), info)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "saved %s: index %d, term %d, %d instances of %d types, %d bytes, sha256 %s\n",
			args[0], info.Index, info.Term, info.Instances, len(info.Types), len(file), info.SHA256)
		return nil
	})
	f.add(cmd)
	return cmd
}

func newSnapshotInspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Verify a backup file and say what it holds",
		Long: `Verify a backup file (its header, size and checksum, and every instance of
its table) and print what it holds. A damaged file is an error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := inspectFile(args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), info)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "file\t%s\n", args[0])
			fmt.Fprintf(w, "format\t%d\n", info.Format)
			fmt.Fprintf(w, "index\t%d\n", info.Index)
			fmt.Fprintf(w, "term\t%d\n", info.Term)
			if info.Node != "" {
				fmt.Fprintf(w, "taken\t%s on %s\n", info.TakenAt.Format("2006-01-02T15:04:05.000Z07:00"), info.Node)
			}
			fmt.Fprintf(w, "size\t%d bytes (the table)\n", info.Size)
			fmt.Fprintf(w, "sha256\t%s (verified)\n", info.SHA256)
			fmt.Fprintf(w, "table hash\t%s (at index %d where it was taken)\n", info.TableHash, info.Index)
			fmt.Fprintf(w, "instances\t%d\n", info.Instances)
			types := make([]string, 0, len(info.Types))
			for t := range info.Types {
				types = append(types, t)
			}
			sort.Strings(types)
			for _, t := range types {
				fmt.Fprintf(w, "  %s\t%d\n", t, info.Types[t])
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON for scripts")
	return cmd
}

func newSnapshotRestoreCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the table of the whole cluster by a backup's",
		Long: `Replace the service table of every binder by FILE's, through the Raft log.
The file is verified here first, then again by the binders; a damaged file
changes nothing. Instances registered since the backup are removed, those
deregistered since come back; every lease starts afresh, so a server whose
lease lapsed meanwhile is probed and removed one TTL later.`,
		Args: cobra.ExactArgs(1),
	}
	cmd.RunE = f.run(func(cmd *cobra.Command, args []string, c *client.Client) error {
		file, err := readSnapshotFile(args[0])
		if err != nil {
			return err
		}
		if _, err := binder.InspectSnapshot(bytes.NewReader(file)); err != nil {
			return fmt.Errorf("%s: %w (nothing was sent)", args[0], err)
		}
		ctx, cancel := ctxWithTimeout(cmd, f.timeout)
		defer cancel()
		res, err := c.RestoreSnapshot(ctx, file)
		if err != nil {
			return err
		}
		if f.json {
			return printJSON(cmd.OutOrStdout(), res)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "restored %s: %d instances of %d types at index %d (the backup of index %d, term %d)\n",
			args[0], res.Services, res.Types, res.Index, res.BackupIndex, res.BackupTerm)
		return nil
	})
	f.add(cmd)
	return cmd
}

// readSnapshotFile reads a backup file, refusing one larger than any a
// binder takes before reading it all.
func readSnapshotFile(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, binder.MaxSnapshotFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > binder.MaxSnapshotFileBytes {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", path, binder.ErrSnapshotTooLarge, binder.MaxSnapshotFileBytes)
	}
	return data, nil
}

func inspectFile(path string) (binder.SnapshotInfo, error) {
	fh, err := os.Open(path)
	if err != nil {
		return binder.SnapshotInfo{}, err
	}
	defer fh.Close()
	info, err := binder.InspectSnapshot(fh)
	if err != nil {
		return info, fmt.Errorf("%s: %w", path, err)
	}
	return info, nil
}
