package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/lieur/lieur/transport/wire"
)

// Paths served.
const (
	// Prefix is every path this package owns besides Root (see Owns).
	Prefix = "/ui/"
	// Root redirects to Prefix.
	Root = "/ui"
)

// ContentSecurityPolicy is sent with every answer: the page may load
// scripts, styles and images only from the binder that served it, fetch
// only from it, run no inline script or style, and not be framed.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

//go:embed static
var static embed.FS

// contentTypes maps the extensions of the embedded files to what they are
// served as; a file with another extension is not served (see New).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".txt":  "text/plain; charset=utf-8",
}

// Owns reports whether a request for path p is this package's to answer.
func Owns(p string) bool { return p == Root || strings.HasPrefix(p, Prefix) }

type file struct {
	body  []byte
	ctype string
	etag  string
}

// Handler serves the embedded files.
type Handler struct {
	files map[string]file // by path under /ui/: "" is index.html
}

// New returns the UI handler over the embedded files.
func New() *Handler {
	h, err := newHandler(static)
	if err != nil {
		// The files are part of the binary: a failure is a build bug.
		panic(err)
	}
	return h
}

func newHandler(fsys fs.FS) (*Handler, error) {
	sub, err := fs.Sub(fsys, "static")
	if err != nil {
		return nil, err
	}
	h := &Handler{files: map[string]file{}}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ctype, ok := contentTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("ui: embedded file %s has no known content type", p)
		}
		body, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		h.files[p] = file{body: body, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		return nil, err
	}
	idx, ok := h.files["index.html"]
	if !ok {
		return nil, fmt.Errorf("ui: no index.html embedded")
	}
	h.files[""] = idx
	return h, nil
}

// Files lists the paths served under /ui/ (index.html also as "").
func (h *Handler) Files() []string {
	out := make([]string, 0, len(h.files))
	for p := range h.files {
		out = append(out, p)
	}
	return out
}

// ServeHTTP answers GET and HEAD of /ui (a redirect to /ui/), /ui/ (the
// page) and /ui/<file>.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", ContentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path))
		return
	}
	if r.URL.Path == Root {
		target := Prefix
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		hdr.Set("Location", target)
		w.WriteHeader(http.StatusMovedPermanently)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, Prefix)
	f, ok := h.files[name]
	if !ok || !strings.HasPrefix(r.URL.Path, Prefix) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
		return
	}
	hdr.Set("Content-Type", f.ctype)
	hdr.Set("ETag", f.etag)
	// Revalidated every time (a 304 when unchanged), so that an upgraded
	// binder's page is never mixed with an older cached module.
	hdr.Set("Cache-Control", "no-cache")
	// The ETag alone validates: no Last-Modified (embedded files have no
	// time of their own).
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}

// writeError answers as lieur's API does: {"error": "..."}.
func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(wire.Error{Error: msg})
}
