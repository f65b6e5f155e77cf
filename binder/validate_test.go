package binder

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRegistrationNormalize(t *testing.T) {
	ok := func() Registration { return Registration{Type: "echo", Address: "127.0.0.1", Port: 12347} }
	tests := []struct {
		name    string
		mutate  func(*Registration)
		wantErr string // substring naming the field; empty for valid
		wantID  string
	}{
		{"default id", func(r *Registration) {}, "", "echo-127.0.0.1-12347"},
		{"explicit id", func(r *Registration) { r.ID = "my.echo_1" }, "", "my.echo_1"},
		{"ipv6", func(r *Registration) { r.Address = "::1" }, "", "echo-::1-12347"},
		{"host name", func(r *Registration) { r.Address = "echo-1.example.com" }, "", "echo-echo-1.example.com-12347"},
		{"port 65535", func(r *Registration) { r.Port = 65535 }, "", "echo-127.0.0.1-65535"},
		{"upper-case type", func(r *Registration) { r.Type = "Echo" }, "type", ""},
		{"empty type", func(r *Registration) { r.Type = "" }, "type", ""},
		{"type ending in dash", func(r *Registration) { r.Type = "echo-" }, "type", ""},
		{"type of 64 chars", func(r *Registration) { r.Type = strings.Repeat("a", 64) }, "type", ""},
		{"type with dot", func(r *Registration) { r.Type = "a.b" }, "type", ""},
		{"empty address", func(r *Registration) { r.Address = "" }, "address", ""},
		{"address with space", func(r *Registration) { r.Address = "a b" }, "address", ""},
		{"address with slash", func(r *Registration) { r.Address = "../etc" }, "address", ""},
		{"port 0", func(r *Registration) { r.Port = 0 }, "port", ""},
		{"negative port", func(r *Registration) { r.Port = -1 }, "port", ""},
		{"port 65536", func(r *Registration) { r.Port = 65536 }, "port", ""},
		{"id with slash", func(r *Registration) { r.ID = "a/b" }, "id", ""},
		{"id too long", func(r *Registration) { r.ID = strings.Repeat("a", MaxIDLen+1) }, "id", ""},
		{"meta empty key", func(r *Registration) { r.Meta = map[string]string{"": "v"} }, "meta", ""},
		{"meta control char", func(r *Registration) { r.Meta = map[string]string{"k": "a\x00b"} }, "meta", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ok()
			tc.mutate(&r)
			err := r.Normalize()
			if tc.wantErr == "" {
				assert.NoError(t, err)
				assert.Equal(t, tc.wantID, r.ID)
				return
			}
			assert.True(t, errors.Is(err, ErrInvalid), "error %v wraps ErrInvalid", err)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
}
