package grpcresolver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/lieur/lieur/client"
	"github.com/lieur/lieur/transport/wire"
)

// maxBody bounds a blocking query's answer, as the client library does.
const maxBody = 64 << 20

// follow sends one blocking query for the type: GET
// /v1/services/{type}?index=after&wait=..., which a binder answers once the
// type's index passes after, or when the wait runs out. The client library
// has no blocking list that returns its errors (its Watch retries them
// forever), so the query is sent here, with the library's rules: the
// binders in a fresh random order, the next one on a network error or a
// 5xx, and, when every binder refused a default read with a 5xx, one more
// round with ?stale=true unless the Config turned that off. A 404 is the
// empty list at the index it carries. It sends no min_index (the client
// keeps the index of its own reports to itself): the binder answers only
// once the type's index passes after, and apply drops an answer older
// than the last one, so the set never moves backwards.
func (r *lieurResolver) follow(ctx context.Context, after uint64) ([]client.Instance, uint64, error) {
	q := url.Values{"index": {strconv.FormatUint(after, 10)}, "wait": {formatWait(r.wait)}}
	list, idx, all5xx, err := r.round(ctx, q)
	if err == nil || !all5xx || !r.staleFallback || ctx.Err() != nil {
		return list, idx, err
	}
	q.Set("stale", "true")
	if list, idx, _, serr := r.round(ctx, q); serr == nil {
		return list, idx, nil
	}
	return nil, 0, err
}

// round asks every binder once, in a random order, until one answers.
// all5xx reports whether every binder answered with a 5xx.
func (r *lieurResolver) round(ctx context.Context, q url.Values) ([]client.Instance, uint64, bool, error) {
	binders := r.c.Binders()
	rand.Shuffle(len(binders), func(i, j int) { binders[i], binders[j] = binders[j], binders[i] })
	all5xx := true
	var last error
	for _, b := range binders {
		if err := ctx.Err(); err != nil {
			return nil, 0, false, err
		}
		list, idx, status, err := r.query(ctx, b, q)
		switch {
		case err == nil:
			return list, idx, false, nil
		case status >= 500:
		case status != 0:
			return nil, 0, false, err // a final answer: 400, 401, 403...
		default:
			all5xx = false
		}
		last = err
	}
	return nil, 0, all5xx, fmt.Errorf("%w (tried %d): %w", client.ErrNoBinder, len(binders), last)
}

// query sends one blocking query to one binder. status is the answer's
// HTTP status, 0 when none arrived.
func (r *lieurResolver) query(ctx context.Context, binder string, q url.Values) ([]client.Instance, uint64, int, error) {
	path := "/v1/services/" + url.PathEscape(r.typ)
	actx, cancel := context.WithTimeout(ctx, r.wait+r.attemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, binder+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, 0, 0, err
	}
	req.Header.Set("Accept", "application/json")
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("%s: %w", binder, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	switch {
	case err != nil:
		return nil, 0, 0, fmt.Errorf("%s: read response (status %d): %w", binder, resp.StatusCode, err)
	case len(body) > maxBody:
		return nil, 0, 0, fmt.Errorf("%s: response larger than %d bytes (status %d)", binder, maxBody, resp.StatusCode)
	}
	fail := func(err error) ([]client.Instance, uint64, int, error) {
		return nil, 0, resp.StatusCode, fmt.Errorf("GET %s via %s: %w", path, binder, err)
	}
	idx, ierr := strconv.ParseUint(resp.Header.Get(wire.HeaderIndex), 10, 64)
	switch {
	case resp.StatusCode == http.StatusNotFound && ierr == nil:
		return []client.Instance{}, idx, resp.StatusCode, nil
	case resp.StatusCode/100 != 2:
		return fail(answerError(resp.StatusCode, body))
	case ierr != nil:
		return fail(fmt.Errorf("bad or missing %s header %q", wire.HeaderIndex, resp.Header.Get(wire.HeaderIndex)))
	}
	var res wire.ServicesResponse
	if err := json.Unmarshal(body, &res); err != nil {
		return fail(fmt.Errorf("decode response: %w", err))
	}
	list := make([]client.Instance, len(res.Services))
	for i, w := range res.Services {
		list[i] = client.Instance{ID: w.ID, Type: w.Type, Address: w.Address, Port: w.Port, Meta: w.Meta, Status: w.Status, Tags: w.Tags}
	}
	return list, idx, resp.StatusCode, nil
}

// answerError describes an error answer: its status and the message of its
// JSON body, or an excerpt of a body that is not one.
func answerError(status int, body []byte) error {
	var e wire.Error
	msg := strings.TrimSpace(string(body))
	if err := json.Unmarshal(body, &e); err == nil && e.Error != "" {
		msg = e.Error
		if e.Code != "" {
			msg += " (" + e.Code + ")"
		}
	} else if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg == "" {
		return errors.New(strconv.Itoa(status) + " " + http.StatusText(status))
	}
	return fmt.Errorf("%d %s: %s", status, http.StatusText(status), msg)
}

// formatWait renders a wait for time.ParseDuration on the binder.
func formatWait(d time.Duration) string { return d.Round(time.Millisecond).String() }
