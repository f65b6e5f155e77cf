package consul

import (
	"fmt"
	"mime"
	"net/http"
)

// Headers a browser may send and read on an allowed origin: Consul's.
const (
	corsAllowMethods  = "GET, PUT"
	corsAllowHeaders  = "Authorization, Content-Type, X-Consul-Token"
	corsExposeHeaders = "X-Consul-Index, X-Consul-KnownLeader, X-Consul-LastContact, X-Consul-ContentHash, X-Consul-Effective-Consistency, Retry-After"
)

// cors answers the CORS part of a request that names an Origin, the way
// lieur's own API does (transport/httpapi/browser.go), with Consul's
// headers. It reports false when it answered the request itself.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	w.Header().Add("Vary", "Origin")
	if !s.origins[origin] && !s.origins["*"] {
		if preflight {
			writeError(w, http.StatusForbidden, "", fmt.Sprintf("origin %s may not call this API from a browser (see --allow-origin)", truncate(origin)))
			return false
		}
		// No CORS header: the browser keeps the answer from the page.
		return true
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	if preflight {
		h.Set("Access-Control-Allow-Methods", corsAllowMethods)
		h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
	return true
}

func hasBody(r *http.Request) bool {
	return r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody)
}

func isJSON(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}
