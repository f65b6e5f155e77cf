// Package ui serves lieur's web UI: a handful of static files embedded in
// the binary (plain ES modules, one stylesheet, no framework, no build
// step), under /ui/ on every binder's HTTP port. That is its one job: the
// page holds no data and calls lieur's own JSON API on the same origin
// (GET /v1/services and /v1/events as blocking queries, GET
// /v1/cluster/status, DELETE /v1/services/{id}, POST /v1/reports), with
// the token the user enters, so it needs no endpoint, CORS rule or
// credential of its own.
//
// Every answer carries a strict Content-Security-Policy (scripts, styles,
// images and fetches from this origin only; no inline script or style; no
// framing), nosniff, and no-referrer. Unknown paths under /ui/ get the
// API's JSON 404 and other methods its JSON 405, so a script sees one
// error shape whatever it calls. docs/ui.md describes the views.
package ui
