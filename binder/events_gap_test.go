package binder_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/lieur/lieur/binder"
)

// Log entries without events (barriers, membership, cluster metadata)
// leave holes in the events' indexes. A client whose last event sits
// just before such a hole has missed nothing when the ring drops up to
// it, and oldest must not say otherwise; one more dropped event, and it
// has.
func TestEventLogOldestIgnoresIndexesWithoutEvents(t *testing.T) {
	l := binder.NewEventLog(2)
	l.Append(1, time.Now(), one("a"))
	l.Append(5, time.Now(), one("b")) // 2..4 carried no change
	l.Append(9, time.Now(), one("c")) // pushes a (index 1) out
	events, _, oldest := l.Since(1, 0)
	assert.Equal(t, []uint64{9, 5}, indexes(events), "everything after 1 is still held")
	assert.Equal(t, uint64(2), oldest, "a client at index 1 missed nothing: 1 >= oldest-1")

	l.Append(10, time.Now(), one("d")) // pushes b (index 5) out
	_, _, oldest = l.Since(0, 0)
	assert.Equal(t, uint64(6), oldest, "a client at index 1 missed b: 1 < oldest-1")
}
