// Package registry is Gantry's built-in OCI image registry: the
// distribution engine (github.com/distribution/distribution/v3) serving
// filesystem storage under the data directory, fronted by Gantry's own
// authentication, authorization, referrers index, events and garbage
// collector.
//
// Repositories are named NAMESPACE/NAME; the first path element is the
// Gantry namespace and is what permissions are checked against (pull needs
// read on the namespace, push and delete need write). Clients authenticate
// with a platform token, either as the password of HTTP Basic auth or
// through the Docker token flow served at /v2/token.
//
// The package owns the HTTP surface under /v2/ and the on-disk layout below
// its data directory. It must not know how tokens or roles are stored: that
// comes in through the Authenticator and Authorizer interfaces, and whether
// a manifest may be deleted comes in through Config.CanDelete. It does not
// listen on a socket; the caller mounts Handler on its own listener.
package registry
