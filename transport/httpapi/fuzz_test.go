package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// Every handler that decodes a body answers anything with a 2xx or a 4xx
// carrying a JSON error: never a 500, never a panic.
func FuzzHandlerBodies(f *testing.F) {
	for _, seed := range []string{
		`{"type":"echo","address":"127.0.0.1","port":12347}`,
		`{"type":"echo","address":"h","port":1,"id":"x","meta":{"k":"v"},"ttl":"5s"}`,
		`{"id":"echo-127.0.0.1-12347"}`,
		`{"id":"n9","raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}`,
		`{"command":{"type":"register/v1","body":{"id":"a","type":"t","address":"h","port":1}}}`,
		`{"commands":[{"type":"deregister/v1","body":{"id":"a"}}]}`,
		`{"type":"echo","type":"x"}`, `[`, `null`, `{"port":1e999}`, "\x00",
	} {
		f.Add(seed)
	}
	srv := newAPI(f)
	paths := []string{"/v1/services", "/v1/reports", "/v1/cluster/join", "/v1/internal/apply"}
	f.Fuzz(func(t *testing.T, body string) {
		for _, p := range paths {
			if p == "/v1/cluster/join" && strings.Contains(body, "raft_addr") {
				continue // a well-formed join would really change the cluster
			}
			resp, err := http.Post(srv.URL+p, "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("POST %s %q: %d %s", p, body, resp.StatusCode, data)
			}
			if resp.StatusCode/100 != 2 {
				var e struct{ Error string }
				if json.Unmarshal(data, &e) != nil || e.Error == "" {
					t.Fatalf("POST %s %q: %d without a JSON error: %q", p, body, resp.StatusCode, data)
				}
			}
		}
	})
}
