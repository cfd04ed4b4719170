// Package store keeps Gantry's objects in etcd.
//
// It owns the key layout (PREFIX/PLURAL/NAMESPACE/NAME), the JSON encoding
// of objects, and the rules that make the store safe to share between
// controllers: every write is a transaction guarded by the revision the
// writer read (compare-and-swap), reads are linearizable, and watches are
// etcd watches — ordered, exactly once, resumable from any revision that
// has not been compacted. It also runs the embedded single-member etcd that
// `gantry up` uses.
//
// The store knows nothing of HTTP, authorization or controllers.
package store
