// Package v1 defines Gantry's API resources: their Go types, JSON shape,
// defaults and validation, and the decoder for YAML manifests.
//
// The package does no I/O and imports nothing else from Gantry, so that the
// client, the server, the agent and the CLI can all share it. Every object
// carries a TypeMeta (kind, apiVersion) and an ObjectMeta whose Revision is
// the store revision the object was read at; writes that pass it back are
// compare-and-swap.
package v1
