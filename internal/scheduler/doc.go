// Package scheduler decides which Node each Instance runs on and records
// the decision in the store.
//
// It has two halves. The placement half is pure: a Snapshot of nodes and of
// what is already placed on them, a chain of small feasibility Filters
// (each with the reason it gives when it turns a node down), Scorers for
// bin-packing and spreading, and Place, which picks the best feasible node
// or explains, per kind of reason, why none fits. It does no I/O and is
// tested in tables and benchmarked at 5,000 nodes.
//
// The loop half, Scheduler, lists and watches Nodes and Instances, keeps the
// Snapshot current from the watch, and binds each pending Instance as soon as
// it is seen by writing Spec.Node with compare-and-swap on the revision it
// read. An Instance that fits nowhere stays Pending with reason
// Unschedulable and a message saying what is missing; it is tried again
// whenever a node or an instance changes in a way that could make room.
//
// The package must not start containers, change an Instance once it is
// bound, or write Nodes: binding is its only effect on the cluster. It does
// not elect a leader either; whoever runs it decides that (two schedulers on
// one store never bind an instance twice, but they can overcommit a node in
// the moment between one's bind and the other seeing it).
package scheduler
