package consul

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/fsm"
)

// serviceName validates a service name taken from the path: every lieur
// service is a type, a DNS label, so another name can never exist; it is
// refused (400) rather than answered as empty, so that a caller asking
// for "Web" learns that the service is "web".
func serviceName(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	if err := binder.ValidateType(name); err != nil {
		writeError(w, http.StatusBadRequest, "", invalidNameMessage(name))
		return "", false
	}
	return name, true
}

func invalidNameMessage(name string) string {
	return "Invalid service name " + strconv.Quote(truncate(name)) +
		": lieur service names are DNS labels (lower-case letters, digits and '-', 1 to 63 characters, not starting or ending with '-')"
}

// hasTags reports whether the instance has every tag, compared without
// case as Consul does.
func hasTags(inst *fsm.Instance, want []string) bool {
	for _, w := range want {
		found := false
		for _, t := range inst.Tags {
			if strings.EqualFold(t, w) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// boolParam reads a Consul flag such as ?passing: present without a
// value, or with a value strconv.ParseBool takes.
func boolParam(r *http.Request, key string) (bool, error) {
	params := r.URL.Query()
	if _, ok := params[key]; !ok {
		return false, nil
	}
	v := params.Get(key)
	if v == "" {
		return true, nil
	}
	return strconv.ParseBool(v)
}

// nodeMetaMatch applies ?node-meta=key:value: lieur's nodes have no
// metadata, so any such filter leaves nothing.
func nodeMetaMatch(r *http.Request) bool {
	return len(r.URL.Query()["node-meta"]) == 0
}

// GET /v1/health/service/{name}: [{Node, Service, Checks}], filtered by
// every ?tag and, with ?passing, by health.
func (s *Server) healthService(w http.ResponseWriter, r *http.Request) {
	name, ok := serviceName(w, r)
	if !ok {
		return
	}
	onlyPassing, err := boolParam(r, fsm.StatusPassing)
	if err != nil {
		writeError(w, http.StatusBadRequest, "", "Invalid value for ?passing")
		return
	}
	q, ok := s.read(w, r, "service:read", name, name)
	if !ok {
		return
	}
	list, idx := s.b.ServicesOf(name)
	want := r.URL.Query()["tag"]
	out := make([]healthEntry, 0, len(list))
	if nodeMetaMatch(r) {
		for i := range list {
			inst := &list[i]
			if hasTags(inst, want) && (!onlyPassing || passing(inst)) {
				out = append(out, s.healthEntryOf(inst))
			}
		}
	}
	s.setMeta(w, q, idx)
	writeJSON(w, http.StatusOK, out)
}

// GET /v1/health/checks/{name}: the checks of the service's instances.
func (s *Server) healthChecks(w http.ResponseWriter, r *http.Request) {
	name, ok := serviceName(w, r)
	if !ok {
		return
	}
	q, ok := s.read(w, r, "service:read", name, name)
	if !ok {
		return
	}
	list, idx := s.b.ServicesOf(name)
	out := []healthCheck{}
	if nodeMetaMatch(r) {
		for i := range list {
			out = append(out, checksOf(&list[i])...)
		}
	}
	s.setMeta(w, q, idx)
	writeJSON(w, http.StatusOK, out)
}

// GET /v1/health/state/{state}: every check in that state, or every check
// for "any". Like Consul, a state that is none of these matches nothing.
func (s *Server) healthState(w http.ResponseWriter, r *http.Request) {
	state := r.PathValue("state")
	q, ok := s.read(w, r, "node:read", "", "")
	if !ok {
		return
	}
	list, idx := s.b.Services()
	out := []healthCheck{}
	if nodeMetaMatch(r) {
		for i := range list {
			for _, c := range checksOf(&list[i]) {
				if state == "any" || c.Status == state {
					out = append(out, c)
				}
			}
		}
	}
	s.setMeta(w, q, idx)
	writeJSON(w, http.StatusOK, out)
}
