// Package apiserver serves Gantry's REST API: /api/v1 objects with
// create, get, list, watch, update (compare-and-swap) and delete; the
// subresources that move Apps (scale, rollback, pause, restart) and that
// agents report through (instance and node status, heartbeats); and
// /healthz, /readyz, /version.
//
// Every request passes the same chain: request id → authentication →
// request info (verb, resource, namespace, name) → authorization → audit →
// handler → admission → store. Errors leave through one function that maps
// the v1 error kinds to HTTP status codes. The server holds no state of its
// own beyond caches; everything lives in the store.
package apiserver
