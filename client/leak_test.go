package client

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// verifyNoWatchers fails t if a watch goroutine of this package is still
// running once it had time to exit.
func verifyNoWatchers(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := goleak.Find(goleak.IgnoreCurrent())
		if err == nil || !strings.Contains(err.Error(), "lieur/client.(*Client).watch") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
