// Package image makes and moves container images without a Docker daemon:
// the busybox seed image, images of static Go binaries, and (as it grows)
// imports of root filesystems, pushes and pulls against the built-in
// registry, and builds.
//
// Images are go-containerregistry v1.Image values in OCI format.
package image
