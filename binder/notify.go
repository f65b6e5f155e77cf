package binder

import "sync"

// notifier wakes waiters per service type: a change to one type does not
// wake those waiting on another. Waiters on "" wake on every change.
type notifier struct {
	mu    sync.Mutex
	chans map[string]chan struct{}
}

func newNotifier() *notifier { return &notifier{chans: map[string]chan struct{}{}} }

// watch returns a channel closed at the next change to typ. Take it before
// checking the condition waited for, so no change slips in between.
func (w *notifier) watch(typ string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch, ok := w.chans[typ]
	if !ok {
		ch = make(chan struct{})
		w.chans[typ] = ch
	}
	return ch
}

func (w *notifier) notify(typ string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, key := range []string{typ, ""} {
		if ch, ok := w.chans[key]; ok {
			close(ch)
			delete(w.chans, key)
		}
	}
}
