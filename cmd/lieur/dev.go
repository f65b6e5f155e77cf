package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lieur/lieur/transport/tlsutil"
)

// devNode is one agent of a dev cluster; its ports and data dir never
// change, so a restarted agent resumes as the same member.
type devNode struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	DataDir  string `json:"data_dir"`
	// DNSAddr: every dev agent serves DNS (UDP and TCP); layouts saved
	// before it existed get one on load.
	DNSAddr string `json:"dns_addr,omitempty"`
}

type devLayout struct {
	Nodes []devNode `json:"nodes"`
}

func newDevCmd() *cobra.Command {
	var nodes int
	var dataDir string
	var extra []string
	var useTLS bool
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local cluster of agents, restarting any that dies",
		Long: `Start N agents as child processes on free loopback ports, print
LIEUR_BINDERS=... for clients, LIEUR_DNS=host:port (every agent serves
DNS, see docs/dns.md) and LIEUR_UI=URL (the web UI, docs/ui.md), restart at once (same id, ports and data dir)
any agent that dies, and stop them all on Ctrl-C.

Without --data-dir the cluster lives in a temporary directory removed on exit.
With --data-dir the layout (ports) is saved there, so running dev again with
the same directory resumes the same cluster.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nodes < 1 || nodes > 9 {
				return fmt.Errorf("--nodes %d: want 1 to 9", nodes)
			}
			if dataDir == "" {
				dir, err := os.MkdirTemp("", "lieur-dev-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				dataDir = dir
			}
			layout, err := loadOrCreateLayout(dataDir, nodes)
			if err != nil {
				return err
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			scheme := "http"
			if useTLS {
				dir := filepath.Join(dataDir, "tls")
				if _, err := os.Stat(filepath.Join(dir, "ca.pem")); err != nil {
					if err := tlsutil.InitDev(dir); err != nil {
						return err
					}
				}
				extra = append(extra, "--tls-cert", filepath.Join(dir, "node.pem"), "--tls-key", filepath.Join(dir, "node-key.pem"), "--tls-ca", filepath.Join(dir, "ca.pem"))
				scheme = "https"
				fmt.Printf("LIEUR_CA=%s\n", filepath.Join(dir, "ca.pem"))
			}
			return runDev(cmd.Context(), exe, layout, scheme, extra)
		},
	}
	cmd.Flags().IntVar(&nodes, "nodes", 3, "number of agents")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "directory for the agents' data (default: a temporary directory)")
	cmd.Flags().BoolVar(&useTLS, "tls", false, "serve the API over TLS and Raft over mutual TLS, with a development CA created in DIR/tls")
	cmd.Flags().StringSliceVar(&extra, "agent-flag", nil, "extra flag passed to every agent, e.g. --agent-flag=--log-level=debug")
	return cmd
}

func loadOrCreateLayout(dir string, n int) (devLayout, error) {
	path := filepath.Join(dir, "dev.json")
	var l devLayout
	if data, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(data, &l); err != nil {
			return l, fmt.Errorf("%s: %w", path, err)
		}
		if len(l.Nodes) != n {
			return l, fmt.Errorf("%s holds a cluster of %d nodes, not %d: use another --data-dir", path, len(l.Nodes), n)
		}
		if l.Nodes[0].DNSAddr != "" {
			return l, nil
		}
		ports, err := freePorts(n)
		if err != nil {
			return l, err
		}
		for i := range l.Nodes {
			l.Nodes[i].DNSAddr = fmt.Sprintf("127.0.0.1:%d", ports[i])
		}
		data, _ := json.MarshalIndent(l, "", "  ")
		return l, os.WriteFile(path, data, 0o640)
	} else if !errors.Is(err, os.ErrNotExist) {
		return l, err
	}
	ports, err := freePorts(3 * n)
	if err != nil {
		return l, err
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("n%d", i+1)
		l.Nodes = append(l.Nodes, devNode{
			ID:       id,
			RaftAddr: fmt.Sprintf("127.0.0.1:%d", ports[2*i]),
			HTTPAddr: fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]),
			DataDir:  filepath.Join(dir, id),
			// Free for TCP when asked; UDP on the same port is free in
			// practice on loopback, and a clash only restarts the agent.
			DNSAddr: fmt.Sprintf("127.0.0.1:%d", ports[2*n+i]),
		})
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return l, err
	}
	data, _ := json.MarshalIndent(l, "", "  ")
	return l, os.WriteFile(path, data, 0o640)
}

// freePorts asks the kernel for n distinct free loopback ports. They are
// released before the agents bind them; a clash is possible but rare, and
// the supervisor would restart the agent that lost it.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func runDev(ctx context.Context, exe string, l devLayout, scheme string, extra []string) error {
	var peers, binders []string
	for _, n := range l.Nodes {
		peers = append(peers, n.ID+"="+n.RaftAddr)
		binders = append(binders, scheme+"://"+n.HTTPAddr)
	}
	fmt.Printf("LIEUR_BINDERS=%s\n", strings.Join(binders, ","))
	// One address, as a resolver takes one; every agent serves DNS.
	fmt.Printf("LIEUR_DNS=%s\n", l.Nodes[0].DNSAddr)
	// Every agent serves the web UI (docs/ui.md); one is enough to open.
	fmt.Printf("LIEUR_UI=%s://%s/ui/\n", scheme, l.Nodes[0].HTTPAddr)
	var wg sync.WaitGroup
	for _, n := range l.Nodes {
		args := append([]string{"agent", "--id", n.ID, "--raft-addr", n.RaftAddr, "--http-addr", n.HTTPAddr,
			"--data-dir", n.DataDir, "--peers", strings.Join(peers, ","), "--dns-addr", n.DNSAddr}, extra...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			supervise(ctx, exe, n.ID, args)
		}()
	}
	wg.Wait()
	fmt.Println("lieur dev: all agents stopped")
	return nil
}

// supervise keeps one agent running until ctx ends. A crashed agent is
// restarted at once; only one that keeps crashing right after start is
// slowed down, so a broken flag does not spin the CPU.
func supervise(ctx context.Context, exe, id string, args []string) {
	pause := 100 * time.Millisecond
	for ctx.Err() == nil {
		cmd := exec.Command(exe, args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		started := time.Now()
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(os.Stderr, "lieur dev: start %s: %v\n", id, err)
		} else {
			fmt.Printf("lieur dev: started %s pid=%d\n", id, cmd.Process.Pid)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if ctx.Err() != nil {
					return
				}
				fmt.Printf("lieur dev: %s exited (%v), restarting\n", id, err)
			case <-ctx.Done():
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-done
				}
				return
			}
		}
		if time.Since(started) > 5*time.Second {
			pause = 100 * time.Millisecond
			continue
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return
		}
		pause = min(2*pause, 2*time.Second)
	}
}
