package consul

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

// The encoded answers of /v1/health/service are reused only while the
// type's index is unchanged, and the cache is bounded.
func TestHealthAnswerCache(t *testing.T) {
	var c answerCache
	c.put("a", 5, []byte("[1]"))
	body, idx, ok := c.get("a", 5)
	assert.True(t, ok)
	assert.Equal(t, uint64(5), idx)
	assert.Equal(t, "[1]", string(body))
	_, _, ok = c.get("a", 6)
	assert.False(t, ok, "a newer index misses")
	for i := 0; i < maxCachedAnswers+10; i++ {
		c.put(fmt.Sprint("k", i), 1, []byte("[]"))
	}
	assert.LessOrEqual(t, len(c.m), maxCachedAnswers)
	big := make([]byte, maxCachedBytes)
	c.put("big", 1, big)
	_, _, ok = c.get("big", 1)
	assert.False(t, ok, "beyond the byte budget nothing is cached")
	assert.Equal(t, []string{"B", "a", "b"}, canonicalTags([]string{"b", "B", "a", "b"}))
}
