package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// reloadOnSIGHUP reloads the token file and the TLS files whenever the
// process gets SIGHUP, until the returned stop is called.
func (a *Agent) reloadOnSIGHUP() (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for {
			select {
			case <-hup:
				_ = a.Reload()
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
		<-ended
	}
}

// Reload reads the token file and the TLS certificate, key and CA again.
// Each takes effect on its own; one that does not load keeps what was in
// force, and the log says why. New requests and connections use the new
// material; established ones keep theirs.
func (a *Agent) Reload() error {
	var errs []error
	if a.auth != nil {
		if err := a.reloadTokens(); err != nil {
			a.log.Error("reload: keeping the tokens in force", "file", a.cfg.TokenFile, "error", err)
			errs = append(errs, err)
		} else {
			a.log.Info("reload: tokens reloaded", "file", a.cfg.TokenFile)
		}
	}
	if a.tls != nil {
		if err := a.tls.Reload(); err != nil {
			a.log.Error("reload: keeping the TLS certificate in force", "cert", a.cfg.TLS.Cert, "error", err)
			errs = append(errs, err)
		} else {
			a.log.Info("reload: TLS certificate reloaded", "cert", a.cfg.TLS.Cert,
				"serial", a.tls.Certificate().SerialNumber.String(), "not_after", a.tls.Certificate().NotAfter)
		}
	}
	if a.auth == nil && a.tls == nil {
		a.log.Info("reload: nothing to reload (no --token-file, no TLS)")
	}
	return errors.Join(errs...)
}

func (a *Agent) reloadTokens() error {
	f, err := os.Open(a.cfg.TokenFile)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := a.auth.Reload(f); err != nil {
		return fmt.Errorf("%s: %w", a.cfg.TokenFile, err)
	}
	a.peer.SetToken(a.auth.ClusterToken())
	return nil
}
