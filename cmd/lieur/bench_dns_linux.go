package main

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// defaultPinning is the first two cores this process may run on, one for
// the server and one for dnsperf, or nothing (unpinned) with fewer.
func defaultPinning() (server, load string) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return "", ""
	}
	var cpus []string
	for c := 0; c < len(set)*64 && len(cpus) < 2; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, strconv.Itoa(c))
		}
	}
	if len(cpus) < 2 {
		return "", ""
	}
	return cpus[0], cpus[1]
}
