package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lieur/lieur/transport/wire"
)

// benchWatchers parks cfg.clients blocking queries on one type, spread
// over the binders, waits until every binder reports them waiting, makes
// one registration, and measures how long until every watcher has its
// answer. With consul, the watchers use Consul's health endpoint.
func benchWatchers(ctx context.Context, cfg benchConfig, consul bool) (benchResult, error) {
	mode := "watchers"
	hc := &http.Client{Timeout: 10 * time.Second}
	typ := cfg.typ + "-watch"
	first := wire.RegisterRequest{ID: fmt.Sprintf("watch-%s-0", benchRun), Type: typ, Address: "127.0.0.1", Port: 40000}
	if _, err := send(ctx, hc, "POST", cfg.binders[0]+"/v1/services", first, 200); err != nil {
		return benchResult{}, fmt.Errorf("setup: %w", err)
	}
	path, header := "/v1/services/"+typ, wire.HeaderIndex
	if consul {
		mode, path, header = "consul-watchers", "/v1/health/service/"+typ, "X-Consul-Index"
	}
	// The index every binder must have reached before the watchers park.
	var index string
	for _, b := range cfg.binders {
		for {
			resp, err := hc.Get(b + path)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK && resp.Header.Get(header) != "" {
					if index == "" {
						index = resp.Header.Get(header)
					}
					if resp.Header.Get(header) == index {
						break
					}
				}
			}
			if ctx.Err() != nil {
				return benchResult{}, ctx.Err()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	var answered []time.Time
	errs := 0
	var parked sync.WaitGroup
	parked.Add(cfg.clients)
	for w := 0; w < cfg.clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var once sync.Once
			defer once.Do(parked.Done)
			trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { once.Do(parked.Done) }}
			url := cfg.binders[w%len(cfg.binders)] + path + "?index=" + index + "&wait=1m"
			req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, url, nil)
			if err == nil {
				var resp *http.Response
				c := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
				if resp, err = c.Do(req); err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK || resp.Header.Get(header) == index {
						err = fmt.Errorf("status %d, index %s", resp.StatusCode, resp.Header.Get(header))
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs++
				return
			}
			answered = append(answered, time.Now())
		}()
	}
	parked.Wait()
	// Every request is written; wait until the binders count them waiting
	// (a watcher refused meanwhile, with 429 say, never will: give up
	// waiting after a while and go on with those that did).
	parkDeadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(parkDeadline) {
		total := 0
		for _, b := range cfg.binders {
			total += int(waitersOf(ctx, hc, b))
		}
		if total >= cfg.clients || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	change := time.Now()
	second := wire.RegisterRequest{ID: fmt.Sprintf("watch-%s-1", benchRun), Type: typ, Address: "127.0.0.1", Port: 40001}
	if _, err := send(ctx, hc, "POST", cfg.binders[0]+"/v1/services", second, 200); err != nil {
		return benchResult{}, fmt.Errorf("change: %w", err)
	}
	wg.Wait()
	sort.Slice(answered, func(i, j int) bool { return answered[i].Before(answered[j]) })
	res := benchResult{Target: cfg.target, Mode: mode, Clients: cfg.clients, Ops: int64(len(answered)), Errors: int64(errs)}
	if len(answered) > 0 {
		last := answered[len(answered)-1].Sub(change)
		res.Seconds = last.Seconds()
		res.P50Ms = float64(answered[len(answered)/2].Sub(change)) / float64(time.Millisecond)
		res.P99Ms = float64(answered[(len(answered)-1)*99/100].Sub(change)) / float64(time.Millisecond)
		res.P999Ms = float64(last) / float64(time.Millisecond)
		res.OpsPerS = float64(len(answered)) / last.Seconds()
	}
	return res, nil
}

// waitersOf reads the lieur_waiters gauge of a binder's /metrics.
func waitersOf(ctx context.Context, hc *http.Client, base string) float64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "lieur_waiters ") {
			v, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, "lieur_waiters ")), 64)
			return v
		}
	}
	return 0
}
