package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"

	"github.com/lieur/lieur/transport/wire"
)

// maxSnapshot bounds a backup file: the largest a binder takes
// (binder.MaxSnapshotFileBytes: a 4 KiB header line and a 64 MiB table).
const maxSnapshot = 4096 + 64<<20

// SaveSnapshot asks a binder for a backup of the table (GET /v1/snapshot,
// an admin token when tokens are on) and returns the backup file. The
// leader takes it, whichever binder is asked; binders that cannot answer
// (unreachable, no leader) are skipped for the next. The file is returned
// as it came: binder.InspectSnapshot verifies it.
func (c *Client) SaveSnapshot(ctx context.Context) ([]byte, error) {
	rep, err := c.snapshotCall(ctx, http.MethodGet, nil)
	if err != nil {
		return nil, err
	}
	return rep.body, nil
}

// RestoreSnapshot replaces the table of the whole cluster by a backup
// file's (PUT /v1/snapshot, admin token). The binder refuses a damaged
// file (an *APIError with status 400) before anything changes. A restore
// that may have reached a binder without an answer is not sent again:
// the error wraps ErrOutcomeUnknown.
func (c *Client) RestoreSnapshot(ctx context.Context, file []byte) (wire.SnapshotRestoreResponse, error) {
	if file == nil {
		file = []byte{}
	}
	rep, err := c.snapshotCall(ctx, http.MethodPut, file)
	if err != nil {
		return wire.SnapshotRestoreResponse{}, err
	}
	cl := call{method: http.MethodPut, path: "/v1/snapshot"}
	return decodeReply[wire.SnapshotRestoreResponse](rep, &cl)
}

// snapshotCall is do for the two calls whose bodies are files, not JSON:
// each binder in a random order until one answers. A 503 that says no
// leader could act, or a binder that could not be reached, moves on to
// the next; a GET, which changes nothing, moves on after any 5xx or lost
// answer too.
func (c *Client) snapshotCall(ctx context.Context, method string, body []byte) (*reply, error) {
	cl := call{method: method, path: "/v1/snapshot", idempotent: method == http.MethodGet}
	if c.isClosed() {
		return nil, fmt.Errorf("client: %s: %w", &cl, ErrClosed)
	}
	binders := make([]string, len(c.binders))
	for i, j := range rand.Perm(len(c.binders)) {
		binders[i] = c.binders[j]
	}
	var lastErr error
	for _, b := range binders {
		if err := ctx.Err(); err != nil {
			if lastErr != nil {
				return nil, fmt.Errorf("client: %s: %w (last error: %v)", &cl, err, lastErr)
			}
			return nil, fmt.Errorf("client: %s: %w", &cl, err)
		}
		rep, err := c.snapshotAttempt(ctx, b, method, body)
		if err != nil {
			if !cl.idempotent && mayHaveArrived(err) {
				return nil, fmt.Errorf("client: %s via %s: %w: %w", &cl, b, ErrOutcomeUnknown, err)
			}
			if cerr := ctx.Err(); cerr != nil {
				return nil, fmt.Errorf("client: %s via %s: %w: %w", &cl, b, cerr, err)
			}
			lastErr = fmt.Errorf("%s: %w", b, err)
			continue
		}
		if rep.status/100 == 2 {
			return rep, nil
		}
		apiErr := newAPIError(rep, &cl)
		notApplied := apiErr.Code == wire.CodeNoLeader || apiErr.Code == wire.CodeNotLeader
		switch {
		case rep.status >= 500 && (cl.idempotent || notApplied):
			lastErr = apiErr
			continue
		default:
			return rep, apiErr
		}
	}
	return nil, fmt.Errorf("client: %s: %w (tried %d): %w", &cl, ErrNoBinder, len(binders), lastErr)
}

func (c *Client) snapshotAttempt(ctx context.Context, binder, method string, body []byte) (*reply, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, binder+"/v1/snapshot", rd)
	if err != nil {
		return nil, &notSentError{fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("Accept", wire.ContentTypeSnapshot+", application/json")
	if body != nil {
		req.Header.Set("Content-Type", wire.ContentTypeSnapshot)
	}
	rep, err := c.send(req, binder, maxSnapshot)
	if err != nil {
		return nil, err
	}
	if rep.status/100 == 2 && method == http.MethodGet && rep.header.Get("Content-Type") != wire.ContentTypeSnapshot {
		// A proxy's page, or a binder of a build without backups.
		return nil, errors.New("the answer is not a backup file (Content-Type " + rep.header.Get("Content-Type") + ")")
	}
	return rep, nil
}
