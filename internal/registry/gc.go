package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Garbage collection while the registry serves.
//
// The collector deletes blobs that no manifest references. It keeps every
// manifest, tagged or not (signatures and other referrers are untagged),
// and everything they reference. The hazard is a push in flight: a client
// uploads (or finds, with HEAD, or mounts) its blobs first and references
// them from a manifest later, possibly minutes later. In that window the
// blobs are unreferenced, and a naive sweep would delete them under the
// client, which then stores a manifest pointing at nothing.
//
// Three rules close the window:
//
//  1. Every request that makes a blob part of a repository or promises it
//     to a client (finishing an upload, a mount, a HEAD on a blob, a
//     manifest PUT for the blobs it references) records the blob in a
//     touch set with the time, and it does so while holding writeMu
//     shared, for the whole request.
//  2. A collection starts with a barrier: it takes writeMu exclusively
//     for an instant and notes the time T. Every write that began before
//     T has finished by then, so its manifest is in storage and the mark
//     phase, which runs next without any lock, sees it.
//  3. The sweep holds writeMu exclusively. It deletes a blob only if the
//     mark did not reach it, it was not touched after T - GCGrace, and
//     its data file was not written after T - GCGrace (the file time
//     covers uploads made before a restart emptied the touch set). The
//     walk over every blob stored that finds the candidates runs before,
//     without the lock, so that writes are held only while the sweep
//     checks those candidates again and deletes them.
//
// A write that commits during the mark touched its blobs after T (rule 1
// and 2), so the sweep keeps them. A write that starts after the sweep
// finds deleted blobs gone and fails cleanly (blob unknown, and the client
// uploads again) instead of half-succeeding. The grace period only needs
// to cover the time between a client checking for a blob and storing the
// manifest that references it. Reads take no lock, and blob data streams
// (PATCH) take none either: an upload in progress lives under _uploads,
// which the collector does not touch. A request that completes an upload
// with data in its body (a monolithic PUT or POST) holds the shared lock
// while that data streams, which a slow client may make last. The
// collection therefore never queues for the exclusive lock (Go's RWMutex
// would then hold every new writer of every namespace behind it): it
// tries for it every few milliseconds, and gives up after gcLockWait with
// an error saying uploads kept it out.
//
// Deleted blobs are also unlinked from the repositories that linked them,
// and so is a blob that lives on for other repositories but that no
// manifest of its own repository references (by the same rules, so a
// push in flight keeps its links); referrers index entries whose manifest
// is gone are dropped. Only what a repository links counts as reachable
// from its manifests: a foreign layer's digest, which the engine lets a
// manifest name without linking it, keeps nothing.

// GCResult reports what a collection did. In JSON (the API's answer) its
// fields are camelCase, as every other API field, and Duration is
// "seconds".
type GCResult struct {
	Repositories int   `json:"repositories"`
	Manifests    int   `json:"manifests"`
	BlobsMarked  int   `json:"blobsMarked"`  // blobs reachable from a manifest
	BlobsDeleted int   `json:"blobsDeleted"` // unreferenced blobs removed
	BytesFreed   int64 `json:"bytesFreed"`   // their size
	// BlobsInFlight are unreferenced blobs left alone because a push may
	// be about to reference them (see GCGrace). The next run takes them.
	BlobsInFlight   int           `json:"blobsInFlight"`
	LinksRemoved    int           `json:"linksRemoved"`
	ReferrersPruned int           `json:"referrersPruned"`
	Duration        time.Duration `json:"-"`
}

// MarshalJSON writes r with its duration in seconds.
func (r GCResult) MarshalJSON() ([]byte, error) {
	type fields GCResult // without this method
	return json.Marshal(struct {
		fields
		Seconds float64 `json:"seconds"`
	}{fields(r), r.Duration.Seconds()})
}

// GC removes blobs that no manifest references, safely while the
// registry serves. Only one collection runs at a time.
func (r *Registry) GC(ctx context.Context) (GCResult, error) {
	r.gcMu.Lock()
	defer r.gcMu.Unlock()
	began := time.Now()

	if err := r.lockWrites(ctx); err != nil {
		return GCResult{}, err
	}
	start := r.now()
	r.writeMu.Unlock()
	cutoff := start.Add(-r.cfg.GCGrace)

	var res GCResult
	m, err := r.mark(ctx, &res)
	if err != nil {
		return res, fmt.Errorf("registry gc: mark: %w", err)
	}

	victims, err := r.candidates(ctx, m, cutoff, &res)
	if err != nil {
		return res, fmt.Errorf("registry gc: sweep: %w", err)
	}
	if gcBeforeSweep != nil {
		gcBeforeSweep()
	}
	if err := r.lockWrites(ctx); err != nil {
		return res, err
	}
	defer r.writeMu.Unlock()
	if err := r.sweep(ctx, m, cutoff, victims, &res); err != nil {
		return res, fmt.Errorf("registry gc: sweep: %w", err)
	}
	r.touches.prune(cutoff)
	if err := r.pruneReferrers(ctx, &res); err != nil {
		return res, fmt.Errorf("registry gc: prune referrers index: %w", err)
	}
	res.Duration = time.Since(began)
	r.log.Info("registry gc", "repositories", res.Repositories, "manifests", res.Manifests,
		"marked", res.BlobsMarked, "deleted", res.BlobsDeleted, "freed", res.BytesFreed,
		"inFlight", res.BlobsInFlight, "links", res.LinksRemoved, "referrers", res.ReferrersPruned,
		"took", res.Duration)
	return res, nil
}

// gcLockWait is how long a collection tries for the exclusive write lock
// before it gives up.
var gcLockWait = 30 * time.Second

// ErrGCBusy is the error of a collection that writes in progress kept
// from its exclusive lock for gcLockWait.
var ErrGCBusy = fmt.Errorf("%w: registry gc: uploads in progress held the registry for 30s; nothing was deleted, run it again later", v1.ErrUnavailable)

// lockWrites takes writeMu exclusively without queueing for it (see the
// package comment on locking).
func (r *Registry) lockWrites(ctx context.Context) error {
	deadline := time.Now().Add(gcLockWait)
	for !r.writeMu.TryLock() {
		if time.Now().After(deadline) {
			return ErrGCBusy
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// markSet is the mark phase's result: the canonical digests of reachable
// blobs, and for every repository its blob links with their targets and
// the links its own manifests reference.
type markSet struct {
	reachable map[digest.Digest]bool
	links     map[string]map[digest.Digest]digest.Digest // repo → link digest → canonical target
	used      map[string]map[digest.Digest]bool          // repo → link digests its manifests reference
}

func (r *Registry) mark(ctx context.Context, res *GCResult) (*markSet, error) {
	m := &markSet{reachable: map[digest.Digest]bool{}, links: map[string]map[digest.Digest]digest.Digest{},
		used: map[string]map[digest.Digest]bool{}}
	// Every repository with anything stored: one that only ever got
	// blobs (a push that stopped before its manifest) has links the
	// sweep must remove with their blobs.
	repos, err := r.allRepositories(ctx)
	if err != nil {
		return nil, err
	}
	for _, name := range repos {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res.Repositories++
		repo, err := r.repository(ctx, name)
		if err != nil {
			return nil, err
		}
		blobs := repo.Blobs(ctx)
		// What the manifests reference counts once the repository's links
		// are read: only a blob the repository links is its to keep. A
		// manifest may name a digest it does not link (a foreign layer,
		// fetched from its URLs), which must not keep another
		// namespace's deleted layer on disk. A manifest that cannot be
		// read stops the collection: the sweep would delete a tagged
		// image's layers.
		var refs []digest.Digest
		err = eachManifest(ctx, repo, name, func(d digest.Digest, man distribution.Manifest) error {
			res.Manifests++
			m.reachable[d] = true
			if _, payload, err := man.Payload(); err == nil {
				m.reachable[digest.Canonical.FromBytes(payload)] = true
			}
			for _, ref := range man.References() {
				if ref.Digest.Validate() == nil {
					refs = append(refs, ref.Digest)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		var nf storagedriver.PathNotFoundError
		links := map[digest.Digest]digest.Digest{}
		err = blobs.(distribution.ManifestEnumerator).Enumerate(ctx, func(d digest.Digest) error {
			target := d
			if t, ok := r.readLink(ctx, layerLinkPath(name, d)); ok {
				target = t
			}
			links[d] = target
			return nil
		})
		if err != nil && !errors.As(err, &nf) {
			return nil, fmt.Errorf("blob links of %s: %w", name, err)
		}
		m.links[name] = links
		// A link maps the digest as the manifest names it onto the
		// canonical blob: the same digest for sha256, the sha256 blob
		// for others.
		used := map[digest.Digest]bool{}
		for _, d := range refs {
			target, ok := links[d]
			if !ok {
				// The engine's enumeration lists sha256 links only.
				if target, ok = r.readLink(ctx, layerLinkPath(name, d)); ok {
					links[d] = target
				}
			}
			if ok {
				used[d] = true
				m.reachable[d] = true
				m.reachable[target] = true
			}
		}
		m.used[name] = used
	}
	res.BlobsMarked = len(m.reachable)
	return m, nil
}

func layerLinkPath(repo string, d digest.Digest) string {
	return path.Join(storageRoot, "repositories", repo, "_layers", string(d.Algorithm()), d.Encoded(), "link")
}

// gcBeforeSweep, when set (by tests), runs between the walk for
// candidates and the sweep.
var gcBeforeSweep func()

// victim is a blob the sweep may delete.
type victim struct {
	d    digest.Digest
	dir  string
	size int64
}

// candidates walks every blob stored, taking no lock, for those the mark
// did not reach and that were neither written nor touched since cutoff:
// the walk takes as long as there are blobs, and writes go on meanwhile.
// The sweep checks each again under the lock.
func (r *Registry) candidates(ctx context.Context, m *markSet, cutoff time.Time, res *GCResult) ([]victim, error) {
	var victims []victim
	blobsDir := path.Join(storageRoot, "blobs")
	err := r.driver.Walk(ctx, blobsDir, func(fi storagedriver.FileInfo) error {
		if fi.IsDir() || path.Base(fi.Path()) != "data" {
			return nil
		}
		// .../blobs/<alg>/<2 hex>/<hex>/data
		parts := strings.Split(strings.TrimPrefix(fi.Path(), blobsDir+"/"), "/")
		if len(parts) != 4 {
			return nil
		}
		d := digest.NewDigestFromEncoded(digest.Algorithm(parts[0]), parts[2])
		if d.Validate() != nil || m.reachable[d] {
			return nil
		}
		if fi.ModTime().After(cutoff) || r.touches.since(d, cutoff) {
			res.BlobsInFlight++
			return nil
		}
		victims = append(victims, victim{d: d, dir: path.Dir(fi.Path()), size: fi.Size()})
		return nil
	})
	var nf storagedriver.PathNotFoundError
	if err != nil && !errors.As(err, &nf) {
		return nil, err
	}
	return victims, nil
}

// sweep deletes the candidates that nothing touched and that were not
// written again since the walk, and unlinks blobs; writeMu is held
// exclusively (rule 3).
func (r *Registry) sweep(ctx context.Context, m *markSet, cutoff time.Time, victims []victim, res *GCResult) error {
	var nf storagedriver.PathNotFoundError
	gone := map[digest.Digest]bool{}
	for _, v := range victims {
		if r.touches.since(v.d, cutoff) {
			res.BlobsInFlight++ // promised or referenced since the walk
			continue
		}
		fi, err := r.driver.Stat(ctx, path.Join(v.dir, "data"))
		switch {
		case errors.As(err, &nf):
			continue
		case err != nil:
			return fmt.Errorf("stat blob %s: %w", v.d, err)
		case fi.ModTime().After(cutoff):
			res.BlobsInFlight++ // written again since the walk
			continue
		}
		if err := r.driver.Delete(ctx, v.dir); err != nil && !errors.As(err, &nf) {
			return fmt.Errorf("delete blob %s: %w", v.d, err)
		}
		gone[v.d] = true
		res.BlobsDeleted++
		res.BytesFreed += v.size
	}
	// A link goes with its blob, and also when no manifest of its own
	// repository references it: the blob may live on for another
	// repository's manifests, but it no longer counts for this one's
	// namespace (its registryStorage quota counts linked blobs). The
	// same grace as for blobs keeps the links of a push in flight.
	for repo, links := range m.links {
		for link, target := range links {
			if !gone[target] && (m.used[repo][link] || !r.unlinkable(ctx, repo, link, target, cutoff)) {
				continue
			}
			if err := r.driver.Delete(ctx, path.Dir(layerLinkPath(repo, link))); err != nil && !errors.As(err, &nf) {
				return fmt.Errorf("unlink blob %s from %s: %w", link, repo, err)
			}
			res.LinksRemoved++
		}
	}
	return nil
}

// unlinkable reports whether a link no manifest of its repository uses
// is old enough to remove: neither it nor its blob touched, and the link
// not written, since cutoff.
func (r *Registry) unlinkable(ctx context.Context, repo string, link, target digest.Digest, cutoff time.Time) bool {
	if r.touches.since(link, cutoff) || r.touches.since(target, cutoff) {
		return false
	}
	fi, err := r.driver.Stat(ctx, layerLinkPath(repo, link))
	return err == nil && !fi.ModTime().After(cutoff)
}

// pruneReferrers drops index entries whose manifest no longer exists. It
// runs under writeMu held exclusively, when no manifest PUT is between
// writing its entry and storing its manifest.
func (r *Registry) pruneReferrers(ctx context.Context, res *GCResult) error {
	manifests := map[string]distribution.ManifestService{}
	return r.referrers.walk(func(repo string, subject digest.Digest, desc ocispec.Descriptor) error {
		ms, ok := manifests[repo]
		if !ok {
			named, err := reference.WithName(repo)
			if err != nil {
				return nil
			}
			rp, err := r.ns.Repository(ctx, named)
			if err != nil {
				return err
			}
			if ms, err = rp.Manifests(ctx); err != nil {
				return err
			}
			manifests[repo] = ms
		}
		exists, err := ms.Exists(ctx, desc.Digest)
		if err != nil || exists {
			return nil
		}
		res.ReferrersPruned++
		return r.referrers.remove(repo, subject, desc.Digest)
	})
}

// touchSet remembers when blobs were last made part of a repository or
// promised to a client. See the top of this file.
type touchSet struct {
	mu   sync.Mutex
	m    map[digest.Digest]time.Time
	keep time.Duration // at least GCGrace
	// dropped is the latest touch time of an entry dropped to keep the
	// set within touchSetPruneAt while still younger than keep: the set
	// no longer knows which blob it was, so since answers yes for every
	// blob until the cutoff passes it.
	dropped time.Time
}

// touchSetPruneAt bounds the set: adding an entry to a full set drops
// those older than keep and, if more than half of it is left, the oldest
// entries down to half. Leaving half the room free means the scan that
// finds them runs once per touchSetPruneAt/2 new entries at most.
const touchSetPruneAt = 100_000

func (t *touchSet) add(d digest.Digest, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[digest.Digest]time.Time{}
	}
	if _, ok := t.m[d]; !ok && len(t.m) >= touchSetPruneAt {
		t.shrinkLocked(now)
	}
	t.m[d] = now
}

// shrinkLocked makes room in a full set (see touchSetPruneAt).
func (t *touchSet) shrinkLocked(now time.Time) {
	t.pruneLocked(now.Add(-t.keep))
	excess := len(t.m) - touchSetPruneAt/2
	if excess <= 0 {
		return
	}
	times := make([]time.Time, 0, len(t.m))
	for _, at := range t.m {
		times = append(times, at)
	}
	slices.SortFunc(times, time.Time.Compare)
	// Entries touched at the same instant go together, so this may drop
	// more than excess; dropped keeps the collector safe either way.
	last := times[excess-1]
	for d, at := range t.m {
		if !at.After(last) {
			delete(t.m, d)
		}
	}
	if last.After(t.dropped) {
		t.dropped = last
	}
}

// since reports whether d was touched at or after cutoff, or may have
// been: after the set dropped entries touched since cutoff, every blob
// counts as touched, and the collector keeps it for one more run.
func (t *touchSet) since(d digest.Digest, cutoff time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.dropped.IsZero() && !t.dropped.Before(cutoff) {
		return true
	}
	at, ok := t.m[d]
	return ok && !at.Before(cutoff)
}

func (t *touchSet) prune(cutoff time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked(cutoff)
	if t.dropped.Before(cutoff) {
		t.dropped = time.Time{}
	}
}

func (t *touchSet) pruneLocked(cutoff time.Time) {
	for d, at := range t.m {
		if at.Before(cutoff) {
			delete(t.m, d)
		}
	}
}
