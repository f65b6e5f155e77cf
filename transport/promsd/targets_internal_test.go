package promsd

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/fsm"
)

// The groups come ordered by type, then id, whatever order the binder
// hands the instances in: Prometheus' target sources are positional
// (url:index), so a stable order keeps them stable between refreshes.
func TestTargetGroupsOrderedByTypeThenID(t *testing.T) {
	var insts []fsm.Instance
	for _, typ := range []string{"web", "api", "db"} {
		for _, id := range []string{"b", "a", "c"} {
			insts = append(insts, fsm.Instance{ID: typ + "-" + id, Type: typ, Address: "10.0.0.1", Port: 80})
		}
	}
	want := []string{"api-a", "api-b", "api-c", "db-a", "db-b", "db-c", "web-a", "web-b", "web-c"}
	for attempt := 0; attempt < 20; attempt++ {
		shuffled := slices.Clone(insts)
		rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		before := slices.Clone(shuffled)
		var got []string
		for _, g := range targetGroups(shuffled, "n1") {
			got = append(got, g.Labels[LabelID])
		}
		require.Equal(t, want, got, "from %v", before)
		require.Equal(t, before, shuffled, "the binder's slice is not reordered")
	}
}
