// Package image makes and moves container images without a Docker
// daemon: the busybox seed image, ko-style images of Go commands, imports
// of root filesystems and image archives, and pushes, pulls, listings,
// inspection and deletes against a registry (normally Gantry's own, with
// a Gantry token) for the `gantry image` commands.
//
// Images are go-containerregistry v1.Image values in OCI format. The
// pieces a builder needs are exported (Layer, FromLayers, Config, Pull,
// Push, Auth.RemoteOptions) so that the Dockerfile builder can live in a
// subpackage, image/build, on top of this one.
//
// The package is a client: it must not import the registry or the API
// server, and it keeps no state between calls.
package image
