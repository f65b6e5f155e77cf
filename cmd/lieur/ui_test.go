package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/lieur/lieur/transport/ui"
)

// The UI is on unless --ui=false, and mountUI hands it /ui and /ui/...
// only: everything else goes to the API behind it.
func TestUIFlagAndMount(t *testing.T) {
	f := newAgentCmd().Flags().Lookup("ui")
	if assert.NotNil(t, f) {
		assert.Equal(t, "true", f.DefValue)
	}
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := mountUI(ui.New(), api)
	for path, want := range map[string]int{"/ui/": 200, "/ui/app.js": 200, "/ui": 301, "/ui/nope": 404, "/uix": 418, "/v1/status": 418} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		assert.Equal(t, want, rec.Code, path)
	}
}
