package consul

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/fsm"
)

// A binder is the agent of every instance: lieur has no agents on the
// application hosts, so /v1/agent/services lists the whole table and a
// registration through any binder is the cluster's.

// PUT /v1/agent/service/register
func (s *Server) agentRegister(w http.ResponseWriter, r *http.Request) {
	if !s.entMetaOK(w, r) {
		return
	}
	body, err := decodeRegistration(w, r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "", err.Error())
		return
	}
	reg, err := body.toRegistration(remoteIP(r))
	if err != nil {
		writeError(w, http.StatusBadRequest, "", err.Error())
		return
	}
	scope, ok := s.allowWrite(w, r, reg.Type)
	if !ok {
		return
	}
	reg.Scope = scope
	s.keepCheckState(&reg)
	// ?replace-existing-checks is accepted and always in effect: a
	// registration carries the whole instance, so checks it does not name
	// go.
	if _, _, err := s.b.Register(r.Context(), reg); err != nil {
		s.fail(w, r, err)
		return
	}
	writeOK(w)
}

// keepCheckState gives the checks of a registration that replaces an
// instance the status and output their namesakes have, as Consul keeps a
// check's state across a service's registration: a service registered
// again (at a restart, by a tool that re-registers) does not turn
// critical for a TTL. It reads this node's table, which is enough: at
// worst a check starts with its declared status.
func (s *Server) keepCheckState(reg *binder.Registration) {
	typ, ok := s.b.TypeOf(reg.ID)
	if !ok {
		return
	}
	old, ok := s.instance(typ, reg.ID)
	if !ok {
		return
	}
	for i := range reg.Checks {
		if c, ok := old.CheckByID(reg.Checks[i].ID); ok {
			reg.Checks[i].Status, reg.Checks[i].Output = c.Status, c.Output
		}
	}
}

// instance finds an instance of typ by id in this node's table.
func (s *Server) instance(typ, id string) (fsm.Instance, bool) {
	list, _ := s.b.ServicesOf(typ)
	for _, inst := range list {
		if inst.ID == id {
			return inst, true
		}
	}
	return fsm.Instance{}, false
}

// remoteIP is the address the request came from (no proxy header is
// trusted).
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	if i := strings.IndexByte(host, '%'); i >= 0 {
		host = host[:i] // an IPv6 zone is this host's, not the caller's
	}
	return host
}

// PUT /v1/agent/service/deregister/{id}
func (s *Server) agentDeregister(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.entMetaOK(w, r) {
		return
	}
	typ, _ := s.b.TypeOf(id)
	scope, ok := s.allowWrite(w, r, "")
	if !ok {
		return
	}
	// A request id makes the removal idempotent, so the binder may resend
	// it when a leader fails mid-way.
	_, err := s.b.Deregister(r.Context(), id, requestID(), scope)
	switch {
	case err == nil:
		writeOK(w)
	case errors.Is(err, binder.ErrUnknownID), errors.Is(err, binder.ErrInvalid) && binder.ValidateID(id) != nil:
		writeError(w, http.StatusNotFound, "", fmt.Sprintf("Unknown service ID %q. Ensure that the service ID is passed, not the service name.", truncate(id)))
	case errors.Is(err, binder.ErrForbidden):
		denied(w, "provided token", "service:write", typ)
	default:
		s.fail(w, r, err)
	}
}

func requestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "consul-" + hex.EncodeToString(b[:])
}

// PUT /v1/agent/check/pass|warn|fail/{id}?note=: the note is the check's
// output.
func (s *Server) checkStatus(status string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.updateCheck(w, r, r.PathValue("id"), status, r.URL.Query().Get("note"))
	}
}

// PUT /v1/agent/check/update/{id} with {"Status", "Output"}.
func (s *Server) checkUpdate(w http.ResponseWriter, r *http.Request) {
	var body struct{ Status, Output string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "", fmt.Sprintf("Request decode failed: %v", err))
		return
	}
	switch body.Status {
	case fsm.StatusPassing, fsm.StatusWarning, fsm.StatusCritical:
	default:
		writeError(w, http.StatusBadRequest, "", fmt.Sprintf("Invalid check status: '%s'", truncate(body.Status)))
		return
	}
	s.updateCheck(w, r, r.PathValue("id"), body.Status, body.Output)
}

// updateCheck reports a TTL check's status. The binder forwards it to the
// leader, which keeps the TTLs, and writes the log only when the status or
// output changes.
func (s *Server) updateCheck(w http.ResponseWriter, r *http.Request, checkID, status, output string) {
	if !s.entMetaOK(w, r) {
		return
	}
	scope, ok := s.allowWrite(w, r, "")
	if !ok {
		return
	}
	err := s.b.CheckUpdate(r.Context(), checkID, status, truncateOutput(output), scope)
	if err == nil {
		writeOK(w)
		return
	}
	owner, def, known := s.checkOwner(checkID)
	switch {
	case errors.Is(err, binder.ErrUnknownCheck), errors.Is(err, binder.ErrInvalid) && !known:
		writeError(w, http.StatusNotFound, "", fmt.Sprintf("Unknown check ID %q. Ensure that the check ID is passed, not the check name.", truncate(checkID)))
	case errors.Is(err, binder.ErrForbidden):
		denied(w, "provided token", "service:write", owner.Type)
	case errors.Is(err, binder.ErrInvalid) && def.Kind != fsm.CheckTTL:
		// Consul's answer, 500 and all, for a status sent to a check it
		// runs itself.
		writeError(w, http.StatusInternalServerError, "", fmt.Sprintf("CheckID %q does not have associated TTL", checkID))
	default:
		s.fail(w, r, err)
	}
}

// checkOwner finds a check in this node's table through the table's
// check index (a failed report must not cost a copy of the table).
func (s *Server) checkOwner(checkID string) (fsm.Instance, fsm.Check, bool) {
	inst, ok := s.b.CheckOwner(checkID)
	if !ok {
		return fsm.Instance{}, fsm.Check{}, false
	}
	c, ok := inst.CheckByID(checkID)
	return inst, c, ok
}

// truncateOutput cuts an output to what the table keeps, as Consul cuts
// it to its OutputMaxSize, and makes it valid UTF-8, which the table
// requires and Consul does not.
func truncateOutput(s string) string {
	if len(s) > fsm.MaxOutputLen {
		s = s[:fsm.MaxOutputLen]
	}
	return strings.ToValidUTF8(s, "")
}

// GET /v1/agent/services: {"id": AgentService} over the whole table.
func (s *Server) agentServices(w http.ResponseWriter, r *http.Request) {
	q, ok := s.read(w, r, "service:read", "", "")
	if !ok {
		return
	}
	list, idx := s.b.Services()
	out := make(map[string]agentService, len(list))
	for i := range list {
		out[list[i].ID] = s.agentServiceOf(&list[i])
	}
	s.setMeta(w, q, idx)
	writeJSON(w, http.StatusOK, out)
}

// GET /v1/agent/checks: {"check id": HealthCheck} over the whole table.
func (s *Server) agentChecks(w http.ResponseWriter, r *http.Request) {
	q, ok := s.read(w, r, "node:read", "", "")
	if !ok {
		return
	}
	list, idx := s.b.Services()
	out := map[string]healthCheck{}
	for i := range list {
		for _, c := range checksOf(&list[i]) {
			out[c.CheckID] = c
		}
	}
	s.setMeta(w, q, idx)
	writeJSON(w, http.StatusOK, out)
}

// GET /v1/agent/service/{id}: one AgentService with its ContentHash, and
// Consul's hash-based blocking: ?hash=H answers once the content's hash
// differs from H, or when the wait ends.
func (s *Server) agentService(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	q, ok := s.parseQuery(w, r)
	if !ok || !s.allowRead(w, r, "service:read", "") {
		return
	}
	look := func() (agentService, string, bool) {
		typ, ok := s.b.TypeOf(id)
		if !ok {
			return agentService{}, "", false
		}
		inst, ok := s.instance(typ, id)
		if !ok {
			return agentService{}, "", false
		}
		svc := s.agentServiceOf(&inst)
		return svc, contentHash(svc), true
	}
	svc, hash, found := look()
	if want := r.URL.Query().Get("hash"); found && want != "" && want == hash {
		typ := svc.Service
		if !s.block(w, r, q, func(ctx context.Context) {
			for ctx.Err() == nil {
				// The index before the look: a change between the two
				// wakes the wait at once instead of being missed.
				idx := s.b.TypeIndex(typ)
				if svc, hash, found = look(); !found || hash != want {
					return
				}
				s.b.WaitIndex(ctx, typ, idx)
			}
		}) {
			return
		}
	}
	if !found {
		writeError(w, http.StatusNotFound, "", fmt.Sprintf("unknown service ID: %s", truncate(id)))
		return
	}
	svc.ContentHash = hash
	w.Header().Set("X-Consul-ContentHash", hash)
	s.setFreshness(w, q)
	writeJSON(w, http.StatusOK, svc)
}

// contentHash is a short hash of a service's content, as Consul's
// hash-based blocking uses it.
func contentHash(svc agentService) string {
	b, _ := json.Marshal(svc)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// CompatVersion is the Consul version /v1/agent/self claims, for clients
// that check one: the API whose shapes this package serves.
const CompatVersion = "1.21.0"

// GET /v1/agent/self: the binder as a Consul server agent. Every
// top-level value is an object, as the Go client decodes it
// (map[string]map[string]interface{}).
func (s *Server) agentSelf(w http.ResponseWriter, r *http.Request) {
	if !s.allowRead(w, r, "agent:read", s.cfg.NodeName) {
		return
	}
	st := s.b.Status()
	leader, members := s.members()
	self := ""
	for _, m := range members {
		if m.id == st.ID {
			self = m.raft
		}
	}
	host, port := self, 0
	if h, p, err := net.SplitHostPort(self); err == nil {
		host = h
		port, _ = strconv.Atoi(p)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"Config": map[string]any{
			"Datacenter": s.cfg.Datacenter, "PrimaryDatacenter": s.cfg.Datacenter, "NodeName": s.cfg.NodeName,
			"NodeID": nodeID("lieur-binder:" + st.ID), "Revision": "lieur", "Server": true, "Version": CompatVersion,
			"BuildDate": "",
		},
		"DebugConfig": map[string]any{"Datacenter": s.cfg.Datacenter, "NodeName": s.cfg.NodeName, "ServerMode": true},
		"Coord":       map[string]any{"Vec": make([]float64, 8), "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5},
		"Member": map[string]any{
			"Name": s.cfg.NodeName, "Addr": host, "Port": port, "Status": 1,
			"Tags": map[string]string{"dc": s.cfg.Datacenter, "role": "consul", "id": st.ID},
		},
		"Stats": map[string]any{
			"consul": map[string]string{"server": "true", "leader": strconv.FormatBool(st.State == "leader"),
				"known_datacenters": "1", "leader_addr": leaderAddr(leader, members)},
			"raft": map[string]string{"state": raftState(st.State), "term": strconv.FormatUint(st.Term, 10),
				"applied_index": strconv.FormatUint(st.AppliedIndex, 10), "last_log_index": strconv.FormatUint(st.LastLogIndex, 10),
				"num_peers": strconv.Itoa(max(len(members)-1, 0))},
			"runtime": map[string]string{"os": runtime.GOOS, "arch": runtime.GOARCH, "version": runtime.Version()},
		},
		"Meta": map[string]string{},
	})
}

// raftState is lieur's state name as raft spells it ("Leader").
func raftState(state string) string {
	if state == "" {
		return "Unknown"
	}
	return strings.ToUpper(state[:1]) + state[1:]
}
