package grpcresolver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/client"
	"github.com/lieur/lieur/transport/wire"
)

// fakeReports stands for the client library's ReportDown.
type fakeReports struct {
	mu      sync.Mutex
	calls   []string // ids, in order
	verdict string
	err     error
	block   chan struct{} // when not nil, each call waits for it (or ctx)
	running int
	most    int // the most calls running at once
}

func (f *fakeReports) ReportDown(ctx context.Context, inst client.Instance) (string, error) {
	f.mu.Lock()
	f.calls = append(f.calls, inst.ID)
	f.running++
	f.most = max(f.most, f.running)
	block, verdict, err := f.block, f.verdict, f.err
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running--
		f.mu.Unlock()
	}()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return verdict, err
}

func (f *fakeReports) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func newTestReporter(t *testing.T, f *fakeReports, spacing time.Duration) (*reporter, *[]DownReport) {
	var mu sync.Mutex
	var outcomes []DownReport
	p := newReporter(f, func(d DownReport) {
		mu.Lock()
		outcomes = append(outcomes, d)
		mu.Unlock()
	})
	p.spacing = spacing
	t.Cleanup(p.close)
	return p, &outcomes
}

var refA = instanceRef{id: "echo-a", typ: "echo"}

func TestReporterReportsOncePerFailureEpisode(t *testing.T) {
	f := &fakeReports{verdict: wire.VerdictAlive}
	p, outcomes := newTestReporter(t, f, 0)
	cause := errors.New("connection refused")

	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); p.failed(refA, "127.0.0.1:7001", cause) }()
	}
	wg.Wait()
	p.wg.Wait()
	assert.Equal(t, 1, f.count(), "twenty failures of one episode make one report")
	require.Len(t, *outcomes, 1)
	assert.Equal(t, DownReport{ID: "echo-a", Type: "echo", Addr: "127.0.0.1:7001", Cause: cause, Verdict: wire.VerdictAlive}, (*outcomes)[0])

	p.failed(refA, "127.0.0.1:7001", cause)
	p.wg.Wait()
	assert.Equal(t, 1, f.count(), "a live verdict ends the reports of the episode")

	p.ready(refA) // a connection worked: the next failure is a new episode
	p.failed(refA, "127.0.0.1:7001", cause)
	p.wg.Wait()
	assert.Equal(t, 2, f.count())

	p.failed(instanceRef{id: "echo-b", typ: "echo"}, "127.0.0.1:7002", cause)
	p.wg.Wait()
	assert.Equal(t, 3, f.count(), "another instance has its own episode")
}

func TestReporterSpacesReportsOfOneInstance(t *testing.T) {
	f := &fakeReports{verdict: wire.VerdictAlive}
	p, _ := newTestReporter(t, f, time.Hour)
	p.failed(refA, "a", nil)
	p.wg.Wait()
	p.ready(refA)
	p.failed(refA, "a", nil)
	p.wg.Wait()
	assert.Equal(t, 1, f.count(), "a new episode within the spacing is not reported")
}

func TestReporterTriesAgainWhenUndecided(t *testing.T) {
	for _, tc := range []struct {
		name    string
		verdict string
		err     error
		again   bool
	}{
		{"no binder answered", "", fmt.Errorf("report: %w", client.ErrNoBinder), true},
		{"verdict unknown", wire.VerdictUnknown, nil, true},
		{"already gone", "", fmt.Errorf("report: %w", client.ErrUnknownID), false},
		{"removed", wire.VerdictRemoved, nil, false},
		{"alive", wire.VerdictAlive, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeReports{verdict: tc.verdict, err: tc.err}
			p, _ := newTestReporter(t, f, 0)
			p.failed(refA, "a", nil)
			p.wg.Wait()
			p.failed(refA, "a", nil) // the same episode goes on
			p.wg.Wait()
			want := 1
			if tc.again {
				want = 2
			}
			assert.Equal(t, want, f.count())
		})
	}
}

func TestReporterNeverBlocksItsCaller(t *testing.T) {
	f := &fakeReports{verdict: wire.VerdictRemoved, block: make(chan struct{})}
	p, _ := newTestReporter(t, f, 0)
	// Every report hangs; failed must still return at once, each time
	// (were it to wait, this test would time out).
	for i := 0; i < 10; i++ {
		p.failed(instanceRef{id: fmt.Sprintf("echo-%d", i), typ: "echo"}, "a", nil)
	}
	poll(t, 10*time.Second, "the reports to start", func() (bool, string) {
		return f.count() == maxReporting, fmt.Sprintf("%d started", f.count())
	})
	close(f.block)
	p.wg.Wait()
	assert.Equal(t, 10, f.count())
	assert.LessOrEqual(t, f.most, maxReporting, "at most maxReporting reports at once")
}

func TestReporterForgetsInstancesThatLeft(t *testing.T) {
	f := &fakeReports{verdict: wire.VerdictAlive}
	p, _ := newTestReporter(t, f, time.Hour)
	p.failed(refA, "a", nil)
	p.wg.Wait()
	p.keepOnly([]client.Instance{{ID: "echo-b"}})
	p.mu.Lock()
	_, kept := p.byID[refA.id]
	p.mu.Unlock()
	assert.False(t, kept)
}

func TestReporterCloseLetsAReportUnderWayFinish(t *testing.T) {
	f := &fakeReports{verdict: wire.VerdictRemoved, block: make(chan struct{})}
	p, outcomes := newTestReporter(t, f, 0)
	p.grace = time.Hour
	p.failed(refA, "a", nil)
	poll(t, 10*time.Second, "the report to start", func() (bool, string) { return f.count() == 1, "" })
	closed := make(chan struct{})
	go func() { p.close(); close(closed) }()
	poll(t, 10*time.Second, "close to stop taking failures", func() (bool, string) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.done, ""
	})
	p.failed(instanceRef{id: "echo-b"}, "b", nil)
	close(f.block) // the binder answers
	<-closed
	assert.Equal(t, 1, f.count(), "no report after close")
	require.Len(t, *outcomes, 1)
	assert.Equal(t, wire.VerdictRemoved, (*outcomes)[0].Verdict, "the report under way finished")
}

func TestReporterCloseCancelsAfterTheGrace(t *testing.T) {
	f := &fakeReports{verdict: wire.VerdictRemoved, block: make(chan struct{})} // never answers
	p, outcomes := newTestReporter(t, f, 0)
	p.grace = 0
	p.failed(refA, "a", nil)
	poll(t, 10*time.Second, "the report to start", func() (bool, string) { return f.count() == 1, "" })
	p.close() // returns: the report was canceled (were it not, this test would time out)
	assert.Empty(t, *outcomes, "a canceled report is not told")
}
