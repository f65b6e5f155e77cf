package consul

import (
	"fmt"
	"net/http"
	"strings"
)

// CodeUnsupported is the error code of an endpoint of Consul's API that
// lieur does not serve.
const CodeUnsupported = "unsupported"

// served are the first path segments after /v1/ of the endpoint families
// this package serves part of; unserved are Consul's others, each with
// the reason a caller reads in the 404. Both are answered here, so that a
// Consul client gets a Consul-side 404 naming the endpoint rather than
// lieur's generic one.
var (
	served = map[string]string{
		"agent":   "lieur serves only the service and check endpoints of /v1/agent/",
		"catalog": "lieur serves only /v1/catalog/services, /v1/catalog/service/{name}, /v1/catalog/nodes and /v1/catalog/datacenters",
		"health":  "lieur serves only /v1/health/service/{name}, /v1/health/checks/{name} and /v1/health/state/{state}",
		"status":  "lieur serves only /v1/status/leader and /v1/status/peers",
	}
	unserved = map[string]string{
		"kv":                "lieur has no key/value store",
		"session":           "lieur has no sessions",
		"acl":               "lieur has no ACL system; tokens come from the binders' --token-file",
		"query":             "lieur has no prepared queries",
		"namespace":         "lieur has no namespaces",
		"namespaces":        "lieur has no namespaces",
		"partition":         "lieur has no admin partitions",
		"partitions":        "lieur has no admin partitions",
		"connect":           "lieur has no service mesh (Connect)",
		"event":             "lieur has no user events",
		"coordinate":        "lieur has no network coordinates",
		"operator":          "lieur's operations are its own API (/v1/cluster, /v1/status)",
		"txn":               "lieur has no transactions",
		"config":            "lieur has no configuration entries",
		"peering":           "lieur has no cluster peering",
		"peerings":          "lieur has no cluster peering",
		"discovery-chain":   "lieur has no service mesh (discovery chains)",
		"exported-services": "lieur has no cluster peering or partitions",
		"imported-services": "lieur has no cluster peering or partitions",
		"sameness-group":    "lieur has no sameness groups",
		"sameness-groups":   "lieur has no sameness groups",
		"internal":          "lieur does not serve Consul's UI",
	}
)

// Owns reports whether a request path belongs to Consul's API, served or
// not: the agent routes those here and everything else to lieur's own
// API. /v1/status (lieur's) and /v1/internal/ (lieur's binder-to-binder
// calls) stay lieur's; Consul's /v1/status/... and /v1/internal/ui/...
// are Consul's. /v1/snapshot is lieur's backup endpoint (its own file
// format, not Consul's).
func Owns(p string) bool {
	seg, more, ok := consulSegment(p)
	if !ok {
		return false
	}
	switch {
	case seg == "status":
		return more
	case seg == "internal":
		return strings.HasPrefix(p, "/v1/internal/ui/")
	}
	_, s := served[seg]
	_, u := unserved[seg]
	return s || u
}

// consulSegment returns the first segment after /v1/ and whether a '/'
// follows it.
func consulSegment(p string) (seg string, more, ok bool) {
	tail, found := strings.CutPrefix(p, "/v1/")
	if !found || tail == "" {
		return "", false, false
	}
	seg, _, more = strings.Cut(tail, "/")
	return seg, more, true
}

// unsupported answers 404 for an endpoint lieur does not serve, naming it
// and saying why.
func (s *Server) unsupported(w http.ResponseWriter, r *http.Request) {
	seg, _, _ := consulSegment(r.URL.Path)
	why, ok := unserved[seg]
	if !ok {
		why, ok = served[seg]
	}
	if !ok {
		why = "lieur does not serve it"
	}
	writeError(w, http.StatusNotFound, CodeUnsupported,
		fmt.Sprintf("unsupported Consul endpoint: %s %s: %s (see docs/consul.md)", r.Method, truncate(r.URL.Path), why))
}

func truncate(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}
