package httpapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/wire"
)

var _ binder.Peer = (*PeerClient)(nil)

// PeerClient is the HTTP side of binder.Peer: how one node calls another.
type PeerClient struct {
	http   *http.Client
	token  atomic.Pointer[string] // the cluster's credential, when tokens are configured
	scheme string
	// clusterID, once the node hands it over, gives the id sent in
	// wire.HeaderCluster (see binder.ClusterMember).
	clusterID atomic.Pointer[func() string]
}

var _ binder.ClusterMember = (*PeerClient)(nil)

// SetClusterID makes every call carry the cluster id that id returns.
func (p *PeerClient) SetClusterID(id func() string) { p.clusterID.Store(&id) }

// UseTLS makes the client call other nodes over HTTPS with cfg.
func (p *PeerClient) UseTLS(cfg *tls.Config) {
	p.http.Transport.(*http.Transport).TLSClientConfig = cfg
	p.scheme = "https"
}

// base turns a node's address into a URL.
func (p *PeerClient) base(target string) string {
	target = strings.TrimRight(target, "/")
	if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") {
		return target
	}
	return p.scheme + "://" + target
}

// SetToken makes every call from now on carry the cluster's credential;
// safe while calls are being made (a token file reload).
func (p *PeerClient) SetToken(token string) { p.token.Store(&token) }

// NewPeerClient returns a client with connection reuse and bounded dials.
func NewPeerClient() *PeerClient {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	return &PeerClient{http: &http.Client{Transport: tr, Timeout: 30 * time.Second}, scheme: "http"}
}

// Close drops idle connections.
func (p *PeerClient) Close() { p.http.CloseIdleConnections() }

// Apply forwards an encoded command to the leader at httpAddr.
func (p *PeerClient) Apply(ctx context.Context, httpAddr string, command []byte) (uint64, error) {
	var resp wire.IndexResponse
	err := p.do(ctx, http.MethodPost, p.base(httpAddr)+"/v1/internal/apply", wire.ApplyRequest{Command: command}, &resp)
	return resp.Index, err
}

// ApplyBatch forwards several encoded commands to the leader in one
// request.
func (p *PeerClient) ApplyBatch(ctx context.Context, httpAddr string, commands [][]byte) ([]binder.Outcome, error) {
	req := wire.ApplyRequest{Commands: make([]json.RawMessage, len(commands))}
	for i, c := range commands {
		req.Commands[i] = c
	}
	url := p.base(httpAddr) + "/v1/internal/apply"
	var resp wire.ApplyBatchResponse
	if err := p.do(ctx, http.MethodPost, url, req, &resp); err != nil {
		return nil, err
	}
	out := make([]binder.Outcome, len(resp.Results))
	for i, r := range resp.Results {
		out[i].Index = r.Index
		if r.Status != http.StatusOK {
			out[i].Err = remoteError(url, r.Status, wire.Error{Error: r.Error, Code: r.Code})
		}
	}
	return out, nil
}

// Join asks the cluster at target to add m.
func (p *PeerClient) Join(ctx context.Context, target string, m binder.Member) error {
	return p.do(ctx, http.MethodPost, p.base(target)+"/v1/cluster/join",
		wire.JoinRequest{ID: m.ID, RaftAddr: m.RaftAddr, HTTPAddr: m.HTTPAddr, Nonvoter: !m.Voter}, nil)
}

// RemoveMember asks the leader at httpAddr to remove a server.
func (p *PeerClient) RemoveMember(ctx context.Context, httpAddr, id string) error {
	return p.do(ctx, http.MethodDelete, p.base(httpAddr)+"/v1/cluster/members/"+id, nil, nil)
}

// Heartbeat asks the leader at httpAddr to renew a lease, within scope.
func (p *PeerClient) Heartbeat(ctx context.Context, httpAddr, id string, scope []string) error {
	var h http.Header
	if scope != nil {
		h = http.Header{wire.HeaderScope: {strings.Join(scope, ",")}}
	}
	return p.doWith(ctx, http.MethodPut, p.base(httpAddr)+"/v1/services/"+url.PathEscape(id)+"/heartbeat", h, nil, nil)
}

// CheckUpdate forwards a ttl check's report to the leader at httpAddr.
func (p *PeerClient) CheckUpdate(ctx context.Context, httpAddr, checkID, status, output string, scope []string) (uint64, error) {
	var h http.Header
	if scope != nil {
		h = http.Header{wire.HeaderScope: {strings.Join(scope, ",")}}
	}
	var resp wire.IndexResponse
	err := p.doWith(ctx, http.MethodPut, p.base(httpAddr)+"/v1/internal/check/"+url.PathEscape(checkID), h,
		wire.CheckUpdateRequest{Status: status, Output: output}, &resp)
	return resp.Index, err
}

// ReadIndex asks the leader at httpAddr for a read index.
func (p *PeerClient) ReadIndex(ctx context.Context, httpAddr string) (uint64, error) {
	var resp wire.IndexResponse
	err := p.do(ctx, http.MethodGet, p.base(httpAddr)+"/v1/internal/read-index", nil, &resp)
	return resp.Index, err
}

// Status reads another node's view of itself, every field of it (GET
// /v1/cluster/status shows them all). Its errors are get's plain ones.
func (p *PeerClient) Status(ctx context.Context, httpAddr string) (binder.Status, error) {
	var st wire.Status
	if err := p.get(ctx, p.base(httpAddr)+"/v1/status", &st); err != nil {
		return binder.Status{}, err
	}
	return binder.Status{ID: st.ID, State: st.State, Leader: st.Leader, Term: st.Term,
		AppliedIndex: st.AppliedIndex, LastLogIndex: st.LastLogIndex, Services: st.Services, TableHash: st.TableHash,
		CaughtUp: st.CaughtUp, LastContact: fromMillis(st.LastContactMs), Unheard: unheardDurations(st.UnheardMs),
		LeaseGuard: st.LeaseGuard, VerificationHold: st.VerificationHold, LogFormat: st.LogFormat, ClusterIDKnown: st.ClusterIDKnown}, nil
}

// get reads another node's JSON answer to a GET. Unlike do, it maps
// nothing onto binder's sentinels: a read has no outcome to be unsure of,
// and "no leader" would be false of a member that is merely down. An
// error is the transport's own (`Get "URL": dial tcp ...: connection
// refused`) or `URL answered STATUS: message`.
func (p *PeerClient) get(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", binder.ErrInvalid, err)
	}
	p.identify(req)
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading answer of %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e wire.Error
		_ = json.Unmarshal(data, &e)
		if e.Error == "" {
			// Not one of ours: a little of it says what answered.
			e.Error = strings.TrimSpace(string(data[:min(len(data), 200)]))
		}
		return fmt.Errorf("%s answered %d: %s", url, resp.StatusCode, e.Error)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer of %s: %w", url, err)
	}
	return nil
}

// do sends one request and maps the answer onto binder's sentinel errors.
// A request that could not be sent at all (the dial failed) is reported as
// ErrNoLeader, which callers may retry; one that failed after it may have
// reached the leader is ErrOutcomeUnknown.
func (p *PeerClient) do(ctx context.Context, method, url string, body, out any) error {
	return p.doWith(ctx, method, url, nil, body, out)
}

func (p *PeerClient) doWith(ctx context.Context, method, url string, header http.Header, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return fmt.Errorf("%w: %v", binder.ErrInvalid, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	p.identify(req)
	resp, err := p.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return fmt.Errorf("%w: %s unreachable: %v", binder.ErrNoLeader, url, err)
		}
		return fmt.Errorf("%w: %s %s: %v", binder.ErrOutcomeUnknown, method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%w: reading answer of %s: %v", binder.ErrOutcomeUnknown, url, err)
	}
	if resp.StatusCode/100 == 2 {
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode answer of %s: %w", url, err)
		}
		return nil
	}
	var e wire.Error
	_ = json.Unmarshal(data, &e)
	if e.Error == "" {
		e.Error = strings.TrimSpace(string(data))
	}
	return remoteError(url, resp.StatusCode, e)
}

// identify adds this binder's credentials to a call: the cluster token
// when a token file gives one, and the cluster id once it is known.
func (p *PeerClient) identify(req *http.Request) {
	if tok := p.token.Load(); tok != nil && *tok != "" {
		req.Header.Set("Authorization", "Bearer "+*tok)
	}
	if id := p.clusterID.Load(); id != nil {
		if v := (*id)(); v != "" {
			req.Header.Set(wire.HeaderCluster, v)
		}
	}
}

// remoteError maps another node's error answer onto binder's sentinels.
func remoteError(url string, status int, e wire.Error) error {
	remote := fmt.Errorf("%s answered %d: %s", url, status, e.Error)
	switch {
	case e.Code == wire.CodeNotLeader:
		return fmt.Errorf("%w: %v", binder.ErrNotLeader, remote)
	case e.Code == wire.CodeNoLeader:
		return fmt.Errorf("%w: %v", binder.ErrNoLeader, remote)
	case e.Code == wire.CodeSuperseded:
		return fmt.Errorf("%w: %v", binder.ErrSuperseded, remote)
	case e.Code == wire.CodeUpgrading:
		return fmt.Errorf("%w: %v", binder.ErrUpgrading, remote)
	case e.Code == wire.CodeUnknownCheck:
		return fmt.Errorf("%w: %v", binder.ErrUnknownCheck, remote)
	case e.Code == wire.CodeNotCluster:
		// Not applied; this node may not have learned the cluster's id
		// yet, which replication brings: worth a retry.
		return fmt.Errorf("%w: %v", binder.ErrNoLeader, remote)
	case status == http.StatusForbidden:
		return fmt.Errorf("%w: %v", binder.ErrForbidden, remote)
	case status == http.StatusNotFound:
		// The caller names the id; the leader's message would only repeat it.
		return binder.ErrUnknownID
	case status == http.StatusBadRequest:
		return fmt.Errorf("%w: %v", binder.ErrInvalid, remote)
	case status >= 500:
		return fmt.Errorf("%w: %v", binder.ErrOutcomeUnknown, remote)
	}
	return remote
}
