package binder

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"

	"github.com/lieur/lieur/fsm"
)

// A restored snapshot of many instances logs the first restoreLoggedEach
// of them one line each and counts the rest; entries' changes are all
// logged, however many.
func TestRestoreLogsEachServiceUpToALimit(t *testing.T) {
	var out bytes.Buffer
	n := &Node{log: hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Info}),
		events: NewEventLog(16), leases: newLeases(), checks: newChecker(),
		changes: newNotifier(), fsm: fsm.New(nil)}
	changes := func(from, count int, snapshot bool) []fsm.Change {
		var cs []fsm.Change
		for i := from; i < from+count; i++ {
			cs = append(cs, fsm.Change{Kind: fsm.Added, FromSnapshot: snapshot, Index: 7,
				Instance: fsm.Instance{ID: fmt.Sprintf("s%d", i), Type: "t", Address: "10.0.0.1", Port: 80}})
		}
		return cs
	}
	counted := regexp.MustCompile(`new services from snapshot: count=(\d+) index=(\d+)`)
	tally := func() (each, rest int, indexes map[string]bool) {
		indexes = map[string]bool{}
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.Contains(line, "new service: id=") {
				each++
			}
			if m := counted.FindStringSubmatch(line); m != nil {
				c, _ := strconv.Atoi(m[1])
				rest += c
				indexes[m[2]] = true
			}
		}
		out.Reset()
		return each, rest, indexes
	}

	// One restore of 5 000, handed over in two parts at its index.
	n.observe(100, changes(0, 4096, true))
	n.observe(100, changes(4096, 904, true))
	each, rest, idx := tally()
	assert.Equal(t, restoreLoggedEach, each)
	assert.Equal(t, 5000-restoreLoggedEach, rest)
	assert.Equal(t, map[string]bool{"100": true}, idx)

	// A later restore logs its own first ones again.
	n.observe(200, changes(0, 1500, true))
	each, rest, _ = tally()
	assert.Equal(t, restoreLoggedEach, each)
	assert.Equal(t, 500, rest)

	// A log entry's changes are never counted away, even past the limit.
	n.observe(201, changes(0, 1200, false))
	each, rest, _ = tally()
	assert.Equal(t, 1200, each)
	assert.Zero(t, rest)
}
