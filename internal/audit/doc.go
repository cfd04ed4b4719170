// Package audit keeps Gantry's audit trail: one record for every API and
// registry request, allowed or denied, linked into a SHA-256 hash chain,
// stored in etcd (through the store's client) and appended to JSON-lines
// files, and readable by query, export and verification.
//
// It owns the record format, the chain, the audit keys in etcd, the
// audit files and their rotation and pruning. It does not decide what a
// request is about (the API server and registry fill in Entry), serve
// HTTP, or authorize readers of the trail.
//
// # What a record holds, and never holds
//
// A record says who (User, Source), what (Method, Path, Verb, Resource,
// Sub, Namespace, Name), when (Time, Duration), the outcome (Status,
// Reason) and RequestID. It never holds request or response bodies,
// query strings or headers: secret values travel only in bodies, and
// tokens only in the Authorization header, so neither can reach the
// trail. Callers must keep it that way: do not put a body, header or
// query string in any field.
//
// # Canonical encoding and hash
//
// Hash = lowercase hex of SHA-256 over the concatenation of these 17
// fields, in this order, each written as a netstring — its length in
// bytes in decimal ASCII, a colon, the bytes, a comma ("5:alice,"):
//
//  1. the literal "gantry-audit-v1"
//  2. Seq, decimal
//  3. Prev, the previous record's Hash as 64 lowercase hex digits ("" for
//     record 1)
//  4. Time as nanoseconds since the Unix epoch, decimal (with a leading
//     "-" before 1970)
//  5. RequestID
//  6. User
//  7. Source
//  8. Method
//  9. Path
//  10. Verb
//  11. Resource
//  12. Sub
//  13. Namespace
//  14. Name
//  15. Status, decimal
//  16. Duration in nanoseconds, decimal
//  17. Reason
//
// Strings are their UTF-8 bytes as they appear in the JSON record after
// JSON unescaping. An absent JSON field is the empty string (or 0).
// Integers have no leading zeros or "+". Example: record 1 by "alice" has
// canonical bytes starting
// "15:gantry-audit-v1,1:1,0:,19:1767225600000000000,…".
//
// A chain is valid when record 1 has Prev "", every record's Prev equals
// the previous record's Hash, Seq grows by exactly one, and every Hash
// matches. To verify an export independently, that is all there is.
// Gantry's own check is stricter in one way: a stored line must also be
// byte-identical to Gantry's JSON encoding of the parsed record (Go's
// encoding/json of Entry, compact), so that even an edit that does not
// change the meaning — a key's letter case, an escape — is caught.
//
// # JSON lines
//
// One record per line, keys in this order: seq, time (RFC 3339 with
// nanoseconds, UTC), requestID, user, source, method, path, verb,
// resource, sub, namespace, name, status, durationNs, reason, prev, hash.
// requestID, source, method, path, verb, resource, sub, namespace, name
// and reason are left out when empty; the others are always there.
// testdata/vector.jsonl is a two-record chain whose hashes were computed
// by an independent implementation of this page. Export writes the
// stored bytes unchanged. Before a record is chained, its strings are made valid UTF-8
// (each invalid byte becomes U+FFFD, as encoding/json would) and cut to
// 4096 bytes (Path) or 1024 bytes (the rest), so that what is hashed is
// exactly what is read back.
//
// # Where records live
//
// In etcd, under Config.Prefix (default "/gantry/audit/"):
//
//	rec/<seq as 20 digits>   the record's JSON line
//	anchor                   {"seq":N,"hash":"…"}: the record just before the oldest stored one
//
// Records are written in batches of up to 100 in one transaction that
// succeeds only if no record has the batch's first seq or a later one and
// the anchor has not changed since the writer read the end of the chain
// (after pruning deleted every record, the anchor is that end), so
// servers sharing one etcd append to one chain: a server that loses the
// race re-reads the end of the chain, anchor included, and re-chains its
// batch after it.
//
// Pruning deletes the oldest records that ended more than Retention ago,
// or beyond the newest MaxRecords, in chunks; each chunk's transaction
// also moves the anchor to the last record it deleted, guarded by the
// anchor's revision. Verify checks the oldest kept record against the
// anchor, so the chain stays verifiable from there on; with no anchor the
// chain must begin at record 1, so deleting the oldest records is caught
// as well. Deleted keys leave etcd's space after compaction and
// defragmentation, like any other etcd data.
//
// In Config.Dir, audit.jsonl is appended to with O_APPEND and synced after
// every batch. When the next batch would take it past MaxFileSize it is
// renamed to audit-<first seq>-<last seq>.jsonl (12 digits each, so name
// order is chain order) and a new audit.jsonl starts; beyond MaxFiles the
// oldest rotated file is deleted. The file is written after the store
// commit, so the store is the reference: if the file misses records (a
// write error, another server's records, a crash) they are copied from
// the store before the next append, and a partial last line left by a
// crash is cut off at start.
//
// # Ordering and restarts
//
// Record only queues (a mutex and an append: BenchmarkRecord measures
// tens to hundreds of nanoseconds at the median and microseconds at p99);
// one goroutine chains and writes. If the store is down, records wait in
// memory up to MaxPending; beyond that Record waits BlockTimeout and then
// drops the record, counting it in Stats.Dropped and logging an error —
// the API keeps serving. Records not yet committed when the process is
// killed are lost: normally the few milliseconds' worth being batched, up
// to MaxPending while the store is down. The API server records a request after answering it, so auditing never
// adds to request latency. On start the chain continues after the newest
// record in the store, or in the file if the file is further ahead (the
// store was restored from an older backup; Verify then reports the gap).
// Close writes what is queued.
//
// # What the chain proves
//
// Anyone who edits, removes or reorders records without recomputing every
// later hash is caught, at the record they touched. Someone who can
// rewrite the whole tail of the chain in etcd and in the files can forge
// a consistent one; against that, keep VerifyResult.LastHash (or the
// export) outside Gantry, for example in a SIEM.
package audit
