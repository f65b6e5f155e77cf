package httpapi

import (
	"net/http"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/transport/wire"
)

func (s *Server) internalReadIndex(w http.ResponseWriter, r *http.Request) {
	idx, err := s.b.ReadIndex(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.IndexResponse{Index: idx})
}

func (s *Server) cluster(w http.ResponseWriter, r *http.Request) {
	leader, members := s.b.Cluster(r.Context())
	resp := wire.ClusterResponse{Leader: leader, Members: make([]wire.Member, 0, len(members))}
	for _, m := range members {
		resp.Members = append(resp.Members, wire.Member{ID: m.ID, RaftAddr: m.RaftAddr, HTTPAddr: m.HTTPAddr, Voter: m.Voter, State: m.State,
			Role: roleOf(m.Voter), UnheardMs: unheardMillis(m.Unheard)})
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	var req wire.JoinRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if err := s.b.Join(r.Context(), binder.Member{ID: req.ID, RaftAddr: req.RaftAddr, HTTPAddr: req.HTTPAddr, Voter: !req.Nonvoter}); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"joined": req.ID})
}

func (s *Server) removeMember(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.b.RemoveMember(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": id})
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, toWireStatus(s.b.Status()))
}

// toWireStatus is the answer of /v1/status; /v1/cluster/status shows each
// member's through it too, so both say the same.
func toWireStatus(st binder.Status) wire.Status {
	return wire.Status{
		ID: st.ID, State: st.State, Leader: st.Leader, Term: st.Term,
		AppliedIndex: st.AppliedIndex, LastLogIndex: st.LastLogIndex,
		Services: st.Services, TableHash: st.TableHash, CaughtUp: st.CaughtUp,
		LastContactMs: millis(st.LastContact), LeaseGuard: st.LeaseGuard, VerificationHold: st.VerificationHold,
		LogFormat: st.LogFormat, ClusterIDKnown: st.ClusterIDKnown, UnheardMs: unheardMap(st.Unheard),
	}
}

func (s *Server) internalApply(w http.ResponseWriter, r *http.Request) {
	var req wire.ApplyRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if len(req.Commands) > 0 {
		cmds := make([][]byte, len(req.Commands))
		for i, c := range req.Commands {
			cmds[i] = c
		}
		outs := s.b.ApplyLocalBatch(r.Context(), cmds)
		resp := wire.ApplyBatchResponse{Results: make([]wire.ApplyResult, len(outs))}
		for i, o := range outs {
			if o.Err == nil {
				resp.Results[i] = wire.ApplyResult{Index: o.Index, Status: http.StatusOK}
				continue
			}
			status, code, msg := errorStatus(o.Err, "")
			resp.Results[i] = wire.ApplyResult{Index: o.Index, Status: status, Code: code, Error: msg}
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	idx, err := s.b.ApplyLocal(r.Context(), req.Command)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.IndexResponse{Index: idx})
}

// internalCheckUpdate is the leader's side of a forwarded ttl check report:
// it answers the index of the status change (0: none), so the forwarding
// node's next reads reflect it.
func (s *Server) internalCheckUpdate(w http.ResponseWriter, r *http.Request) {
	var req wire.CheckUpdateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	idx, err := s.b.CheckUpdateOnLeader(r.Context(), r.PathValue("id"), req.Status, req.Output, s.scope(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.IndexResponse{Index: idx})
}
