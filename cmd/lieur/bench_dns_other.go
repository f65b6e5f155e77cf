//go:build !linux

package main

// defaultPinning: pinning uses taskset, which is Linux's, so elsewhere the
// bench runs unpinned.
func defaultPinning() (server, load string) { return "", "" }
