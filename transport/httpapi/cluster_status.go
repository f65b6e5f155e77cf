package httpapi

import (
	"net/http"

	"github.com/lieur/lieur/transport/wire"
)

// clusterStatus answers GET /v1/cluster/status: every member's own
// /v1/status, fetched by this binder, so that a page that may talk only
// to the binder that served it can show the whole cluster. Always 200: a
// member that does not answer is listed as unreachable, with the reason.
func (s *Server) clusterStatus(w http.ResponseWriter, r *http.Request) {
	rep := s.b.ClusterStatus(r.Context())
	resp := wire.ClusterStatusResponse{Binder: rep.Binder, Leader: rep.Leader, Members: make([]wire.MemberStatus, len(rep.Members))}
	for i, m := range rep.Members {
		out := wire.MemberStatus{ID: m.ID, RaftAddr: m.RaftAddr, HTTPAddr: m.HTTPAddr, Voter: m.Voter}
		if m.Err != nil {
			out.Error = m.Err.Error()
		} else {
			st := toWireStatus(m.Status)
			out.Reachable, out.Status = true, &st
		}
		resp.Members[i] = out
	}
	writeJSON(w, http.StatusOK, resp)
}
