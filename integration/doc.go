// Package integration holds lieur's process-level tests: each builds the
// lieur and lieur-echo binaries, starts real agents on loopback with real
// data dirs, kills and restarts them, and checks what clients see.
package integration
