// Package controller holds the reconcilers that move the cluster toward
// what the store says it should be: the rollout controller (an App's
// instances, rolling updates, automatic rollback), the node lifecycle
// controller (heartbeats → Ready, lost nodes → rescheduled instances) and
// the small informer and work-queue toolkit they share.
//
// Controllers are level-triggered: each pass reads the desired and actual
// state, acts, and records status; running a pass twice is harmless. They
// write only through compare-and-swap so that two controllers (or a
// deposed leader) can never silently overwrite each other.
package controller
