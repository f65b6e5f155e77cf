package consul

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

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
	want := r.URL.Query()["tag"]
	// The answer is a function of the type's instances (its index) and
	// the filters: encoded once per change, as lieur's lookups are.
	key := name + "\x00" + strconv.FormatBool(onlyPassing) + "\x00" + strings.Join(canonicalTags(want), "\x00")
	cacheable := nodeMetaMatch(r)
	if cacheable {
		if body, idx, hit := s.answers.get(key, s.b.TypeIndex(name)); hit {
			s.setMeta(w, q, idx)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(body)
			return
		}
	}
	list, idx := s.b.ServicesOf(name)
	out := make([]healthEntry, 0, len(list))
	if nodeMetaMatch(r) {
		for i := range list {
			inst := &list[i]
			if hasTags(inst, want) && (!onlyPassing || passing(inst)) {
				out = append(out, s.healthEntryOf(inst))
			}
		}
	}
	body, err := json.Marshal(out)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "", err.Error())
		return
	}
	body = append(body, '\n')
	if cacheable {
		s.answers.put(key, idx, body)
	}
	s.setMeta(w, q, idx)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// canonicalTags sorts and dedupes tag filters, so that the same filters
// in another order share one cached answer. Case is kept: folding it here
// as hasTags compares (EqualFold) is not the same as lower-casing for every
// rune, and a wrong answer is worse than a second entry.
func canonicalTags(tags []string) []string {
	out := slices.Clone(tags)
	slices.Sort(out)
	return slices.Compact(out)
}

// answerCache memoises encoded answers by query, each valid while the
// index it was built at is the type's current one. It holds at most
// maxCachedAnswers queries and maxCachedBytes: beyond, answers are built
// each time, so made-up filters cannot grow it.
type answerCache struct {
	mu    sync.Mutex
	m     map[string]cachedAnswer
	bytes int
}

type cachedAnswer struct {
	index uint64
	body  []byte
}

const (
	maxCachedAnswers = 4096
	maxCachedBytes   = 64 << 20
)

func (c *answerCache) get(key string, index uint64) ([]byte, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.m[key]
	if !ok || a.index != index {
		return nil, 0, false
	}
	return a.body, a.index, true
}

func (c *answerCache) put(key string, index uint64, body []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cachedAnswer{}
	}
	old, had := c.m[key]
	if !had && len(c.m) >= maxCachedAnswers || c.bytes-len(old.body)+len(body) > maxCachedBytes {
		return
	}
	c.bytes += len(body) - len(old.body)
	c.m[key] = cachedAnswer{index: index, body: body}
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
