package binder

import "sync"

// notifier wakes waiters per service type: a change to one type does not
// wake those waiting on another. Waiters on "" wake on every change.
//
// Its bookkeeping follows the waiters, not the names asked for: an entry
// lives while someone waits on it, so a flood of waits on made-up types
// leaves nothing behind.
type notifier struct {
	mu    sync.Mutex
	waits map[string]*waiting
}

type waiting struct {
	ch      chan struct{}
	waiters int
}

func newNotifier() *notifier { return &notifier{waits: map[string]*waiting{}} }

// watch returns a channel closed at the next change to typ, and a release
// to call once the caller stops waiting on it. Take it before checking the
// condition waited for, so no change slips in between.
func (w *notifier) watch(typ string) (<-chan struct{}, func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	wt, ok := w.waits[typ]
	if !ok {
		wt = &waiting{ch: make(chan struct{})}
		w.waits[typ] = wt
	}
	wt.waiters++
	var once sync.Once
	return wt.ch, func() { once.Do(func() { w.release(typ, wt) }) }
}

func (w *notifier) release(typ string, wt *waiting) {
	w.mu.Lock()
	defer w.mu.Unlock()
	wt.waiters--
	if wt.waiters == 0 && w.waits[typ] == wt {
		delete(w.waits, typ)
	}
}

func (w *notifier) notify(typ string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, key := range []string{typ, ""} {
		if wt, ok := w.waits[key]; ok {
			close(wt.ch)
			delete(w.waits, key)
		}
	}
}

// size is how many names have waiters, for tests and metrics.
func (w *notifier) size() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.waits)
}
