// Package build builds container images from Dockerfiles without a
// Docker daemon or BuildKit, for `gantry image build DIR` when DIR has a
// Dockerfile.
//
// It owns three things: a Dockerfile parser (Parse: instructions,
// continuations, comments, parser directives, exec and shell forms, and
// clear errors naming the line of anything Gantry does not build), the
// step engine (Build), and a layer cache on disk. FROM images come from
// Gantry's registry through the image package; metadata instructions
// (ENV, ARG, LABEL, WORKDIR, USER, EXPOSE, CMD, ENTRYPOINT) only change
// the image configuration; RUN, COPY and ADD run against a real root
// filesystem in containerd: the parent layers are applied into overlayfs
// snapshots, RUN executes in a runc container on a new snapshot with
// Gantry's secure defaults, COPY and ADD write into the mounted snapshot,
// and containerd's diff service turns the snapshot's changes into the
// step's layer.
//
// Each filesystem step has a cache key chained from the steps before it
// (the base image digest, every instruction after substitution, the ARG
// values a RUN sees, and the digest of what a COPY or ADD reads), and
// its layer is kept under the cache directory. A rebuild with no change
// finds every step there, runs nothing and does not even connect to
// containerd.
//
// Everything a build makes in containerd lives in the gantry-build
// namespace under one lease, and is gone when Build returns, error or
// not; containers are deleted as soon as their step ends.
//
// The package must not push images (the caller does, with image.Push),
// must not talk to registries other than the one it is given (so that
// its token goes nowhere else), and must not touch the agent's
// containerd namespace.
package build
