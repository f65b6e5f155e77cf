package consul

import (
	"net/http"
	"slices"
)

// GET /v1/catalog/services: {"name": ["tag", ...]}, each service's tags
// gathered over its instances, once each, sorted.
func (s *Server) catalogServices(w http.ResponseWriter, r *http.Request) {
	q, ok := s.read(w, r, "service:read", "", "")
	if !ok {
		return
	}
	list, idx := s.b.Services()
	out := map[string][]string{}
	if nodeMetaMatch(r) {
		for i := range list {
			inst := &list[i]
			tags, seen := out[inst.Type]
			if !seen {
				tags = []string{}
			}
			for _, t := range inst.Tags {
				if !slices.Contains(tags, t) {
					tags = append(tags, t)
				}
			}
			out[inst.Type] = tags
		}
	}
	for _, tags := range out {
		slices.Sort(tags)
	}
	s.setMeta(w, q, idx)
	writeJSON(w, http.StatusOK, out)
}

// GET /v1/catalog/service/{name}: the instances, node and service
// flattened, filtered by every ?tag.
func (s *Server) catalogService(w http.ResponseWriter, r *http.Request) {
	name, ok := serviceName(w, r)
	if !ok {
		return
	}
	q, ok := s.read(w, r, "service:read", name, name)
	if !ok {
		return
	}
	list, idx := s.b.ServicesOf(name)
	want := r.URL.Query()["tag"]
	out := make([]catalogService, 0, len(list))
	if nodeMetaMatch(r) {
		for i := range list {
			if hasTags(&list[i], want) {
				out = append(out, s.catalogServiceOf(&list[i]))
			}
		}
	}
	s.setMeta(w, q, idx)
	writeJSON(w, http.StatusOK, out)
}

// GET /v1/catalog/nodes: one node per instance address, sorted by name.
// A node's indexes span its instances' registrations.
func (s *Server) catalogNodes(w http.ResponseWriter, r *http.Request) {
	q, ok := s.read(w, r, "node:read", "", "")
	if !ok {
		return
	}
	list, idx := s.b.Services()
	byAddr := map[string]*apiNode{}
	if nodeMetaMatch(r) {
		for i := range list {
			inst := &list[i]
			n, ok := byAddr[inst.Address]
			if !ok {
				node := s.node(inst.Address, inst.Index)
				byAddr[inst.Address] = &node
				continue
			}
			n.CreateIndex = min(n.CreateIndex, inst.Index)
			n.ModifyIndex = max(n.ModifyIndex, inst.Index)
		}
	}
	out := make([]apiNode, 0, len(byAddr))
	for _, n := range byAddr {
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b apiNode) int {
		switch {
		case a.Node < b.Node:
			return -1
		case a.Node > b.Node:
			return 1
		}
		return 0
	})
	s.setMeta(w, q, idx)
	writeJSON(w, http.StatusOK, out)
}

// GET /v1/catalog/datacenters: the binder's own; lieur knows no other.
func (s *Server) catalogDatacenters(w http.ResponseWriter, r *http.Request) {
	if !s.allowRead(w, r, "operator:read", "") {
		return
	}
	writeJSON(w, http.StatusOK, []string{s.cfg.Datacenter})
}
