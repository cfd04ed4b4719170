package build

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/gantry-dev/gantry/internal/image"
)

// cache keeps what steps produced, so that a rebuild with the same inputs
// reuses them instead of running them again. Under its directory:
//
//	steps/<key>.json       one entry per step key (see stepKey)
//	blobs/sha256/<hex>     the compressed layers the entries name
//
// Files are written to a temporary name and renamed, so concurrent builds
// sharing the directory see whole entries or none. Nothing is ever
// rewritten in place: an entry names content by digest.
type cache struct {
	dir string
}

// cacheVersion changes when the meaning of keys or entries does, so that
// an old cache is ignored rather than misread.
const cacheVersion = 1

// cacheEntry is what a layer step produced.
type cacheEntry struct {
	Version int `json:"version"`
	// Layer is nil when the step changed nothing in the filesystem.
	Layer *layerRecord `json:"layer,omitempty"`
	// CreatedBy is the history line of the step.
	CreatedBy string `json:"createdBy"`
}

// layerRecord describes a gzip-compressed layer kept in the cache.
type layerRecord struct {
	Digest    string `json:"digest"`
	DiffID    string `json:"diffID"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType"`
}

func openCache(dir string) (*cache, error) {
	for _, d := range []string{filepath.Join(dir, "steps"), filepath.Join(dir, "blobs", "sha256"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("build cache: %w", err)
		}
	}
	return &cache{dir: dir}, nil
}

func (c *cache) entryPath(key string) string {
	return filepath.Join(c.dir, "steps", key+".json")
}

func (c *cache) blobPath(h ggcr.Hash) string {
	return filepath.Join(c.dir, "blobs", h.Algorithm, h.Hex)
}

// get returns the entry for key and its layer (nil for an empty step). A
// missing or unreadable entry, or one whose blob is gone, is a miss.
func (c *cache) get(key string) (*cacheEntry, ggcr.Layer, bool) {
	b, err := os.ReadFile(c.entryPath(key))
	if err != nil {
		return nil, nil, false
	}
	var e cacheEntry
	if json.Unmarshal(b, &e) != nil || e.Version != cacheVersion {
		return nil, nil, false
	}
	if e.Layer == nil {
		return &e, nil, true
	}
	l, err := c.layer(*e.Layer)
	if err != nil {
		return nil, nil, false
	}
	return &e, l, true
}

// layer opens a layer kept in the cache.
func (c *cache) layer(r layerRecord) (ggcr.Layer, error) {
	d, err := ggcr.NewHash(r.Digest)
	if err != nil {
		return nil, err
	}
	diffID, err := ggcr.NewHash(r.DiffID)
	if err != nil {
		return nil, err
	}
	p := c.blobPath(d)
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if fi.Size() != r.Size {
		return nil, fmt.Errorf("cached blob %s has %d bytes, want %d", d, fi.Size(), r.Size)
	}
	return &blobLayer{path: p, digest: d, diffID: diffID, size: r.Size, mediaType: types.MediaType(r.MediaType)}, nil
}

// put records an entry.
func (c *cache) put(key string, e cacheEntry) error {
	e.Version = cacheVersion
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return c.writeAtomic(c.entryPath(key), func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// putBlob stores a compressed blob read from r, checking it against its
// digest and size. A blob already stored is not written again.
func (c *cache) putBlob(d ggcr.Hash, size int64, r io.Reader) error {
	p := c.blobPath(d)
	if fi, err := os.Stat(p); err == nil && fi.Size() == size {
		return nil
	}
	return c.writeAtomic(p, func(w io.Writer) error {
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(w, h), r)
		if err != nil {
			return err
		}
		if n != size {
			return fmt.Errorf("blob %s: got %d bytes, want %d", d, n, size)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != d.Hex {
			return fmt.Errorf("blob %s: content has digest sha256:%s", d, got)
		}
		return nil
	})
}

// writeAtomic writes a file through fill under a temporary name and
// renames it into place.
func (c *cache) writeAtomic(p string, fill func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Join(c.dir, "tmp"), "w-*")
	if err != nil {
		return fmt.Errorf("build cache: %w", err)
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := fill(bw); err != nil {
		return fmt.Errorf("build cache: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("build cache: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("build cache: %w", err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return fmt.Errorf("build cache: %w", err)
	}
	done = true
	return nil
}

// blobLayer is a gzip-compressed layer in a file whose digests are known,
// so that a cached build computes nothing over its content.
type blobLayer struct {
	path           string
	digest, diffID ggcr.Hash
	size           int64
	mediaType      types.MediaType
}

func (l *blobLayer) Digest() (ggcr.Hash, error)          { return l.digest, nil }
func (l *blobLayer) DiffID() (ggcr.Hash, error)          { return l.diffID, nil }
func (l *blobLayer) Size() (int64, error)                { return l.size, nil }
func (l *blobLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }
func (l *blobLayer) Compressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("layer %s is gone from the build cache (was it pruned during the build?): %w", l.digest, err)
	}
	return f, err
}

func (l *blobLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	return image.Gunzip(f)
}
