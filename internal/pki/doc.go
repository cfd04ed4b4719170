// Package pki is Gantry's built-in certificate authority and the TLS
// plumbing around it.
//
// It owns the CA made at first start (pki/ca.crt and pki/ca.key in the data
// directory, ECDSA P-256, ten years), the server certificates of the API,
// registry, ingress and agent listeners (re-issued when their names change
// or they near expiry), node client certificates (CN=system:node:NAME,
// O=gantry:nodes, client-auth only) issued from a CSR so a node's private
// key never leaves it, join tokens that let a new agent obtain one, and the
// tls.Config of servers and clients.
//
// Private keys are written 0600 and a key file that group or other users
// may access is refused. The package does not serve HTTP, store join
// tokens or decide what a node may do: the API server does that with what
// NodeFromTLS tells it.
package pki
