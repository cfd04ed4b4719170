package registry

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"

	"github.com/gantry-dev/gantry/internal/keylock"
	"github.com/gantry-dev/gantry/internal/ratelimit"
)

// Config configures the registry. Zero values take the defaults given on
// each field.
type Config struct {
	// DataDir holds everything the registry stores: the engine's
	// filesystem storage under storage/ and the referrers index under
	// referrers/.
	DataDir string
	// PublicURL is the base URL clients reach the registry at, such as
	// https://registry.example.com:5000. The token realm is built from
	// it; when empty, from each request's Host header and scheme.
	PublicURL string
	// Service is the service name of the Bearer challenge and of the
	// tokens' audience. Default "gantry".
	Service string

	Authenticator Authenticator // required
	Authorizer    Authorizer    // required

	// TokenKey signs registry tokens and the engine's upload state. Keep
	// it stable across restarts (store it with the server's other
	// secrets) so that tokens and resumable uploads survive a restart;
	// when empty a random key is made, good for one process.
	TokenKey []byte
	// TokenTTL is how long a registry token is valid. Default 15m.
	TokenTTL time.Duration

	// OnRequest, when set, is told about every request once it is
	// answered, allowed or denied (the audit log).
	OnRequest func(RequestRecord)
	// OnEvent, when set, is told about every manifest pushed or deleted.
	// It is called on one goroutine in order; see Event.
	OnEvent func(Event)
	// CanDelete, when set, is asked before a manifest or tag is deleted;
	// an error refuses the delete with 409 and its text (503 when it
	// wraps v1.ErrUnavailable: it could not tell), unless the request
	// says ?force=true. ref is a tag or a digest: a delete by digest
	// asks about each digest of the manifest and each tag that points
	// at it, as all of them go, and about those of each index that
	// lists it, which would lose a platform.
	CanDelete func(ctx context.Context, repo, ref string) error

	// StorageQuota, when set, gives a namespace's registryStorage quota
	// in bytes (0 for none): a blob that would take the distinct blobs
	// its repositories link past it is refused with 403 DENIED. An error
	// refuses the blob too (503 when it wraps v1.ErrUnavailable).
	StorageQuota func(ctx context.Context, namespace string) (int64, error)

	// MaxManifestSize is the largest manifest accepted, in bytes; larger
	// ones get 413. Default and ceiling 4 MiB, the engine's own limit.
	MaxManifestSize int64
	// GCGrace protects unreferenced blobs written or checked for within
	// this long before a collection starts: a push uploads its blobs
	// before the manifest that references them, and the grace keeps a
	// slow push's blobs alive meanwhile. Default 15m; negative means no
	// grace at all.
	GCGrace time.Duration
	// UploadPurgeAge is how old an abandoned upload must be before the
	// engine's purger removes it. Default 24h.
	UploadPurgeAge time.Duration
}

// engineManifestLimit is the manifest body limit built into the engine's
// manifest handler.
const engineManifestLimit = 4 << 20

func (c Config) withDefaults() Config {
	if c.Service == "" {
		c.Service = "gantry"
	}
	if c.TokenTTL <= 0 {
		c.TokenTTL = 15 * time.Minute
	}
	if c.MaxManifestSize <= 0 || c.MaxManifestSize > engineManifestLimit {
		c.MaxManifestSize = engineManifestLimit
	}
	if c.GCGrace == 0 {
		c.GCGrace = 15 * time.Minute
	}
	if c.GCGrace < 0 {
		c.GCGrace = 0
	}
	if c.UploadPurgeAge <= 0 {
		c.UploadPurgeAge = 24 * time.Hour
	}
	return c
}

// Registry is the running registry. Serve it with Handler; stop it with
// Close.
type Registry struct {
	cfg    Config
	log    *slog.Logger
	engine *handlers.App
	// driver and ns are a second view of the engine's storage, for what
	// the engine's HTTP API does not offer: the catalog filtered by
	// permission, the referrers index, non-canonical digest links and
	// garbage collection. Neither caches anything, so both views agree.
	driver storagedriver.StorageDriver
	ns     distribution.Namespace
	signer *signer
	// limiter slows down sources that keep failing to authenticate.
	limiter   *ratelimit.FailLimiter
	referrers *referrersIndex
	events    *eventQueue

	// writeMu orders writes against the garbage collector's sweep; see
	// gc.go for the whole argument.
	writeMu sync.RWMutex
	gcMu    sync.Mutex // one collection at a time
	touches touchSet
	// nsLocks serializes per namespace: in a namespace with a storage
	// quota, the check of a blob against it and the blob's commit; in
	// every namespace, a manifest commit and a blob delete (see
	// deleteBlob).
	nsLocks keylock.Locks // by namespace

	// Test hooks, nil outside tests: nsLocking runs as a request is
	// about to take a namespace's lock, blobDeleteChecked as a blob
	// delete has found no manifest referencing the blob and is about to
	// unlink it.
	nsLocking         func(ns string)
	blobDeleteChecked func()

	now func() time.Time
}

// New starts a registry over cfg.DataDir. ctx bounds the engine's
// background work (the upload purger); Close stops it too.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Registry, error) {
	cfg = cfg.withDefaults()
	if cfg.DataDir == "" {
		return nil, errors.New("registry: DataDir is required")
	}
	if cfg.Authenticator == nil || cfg.Authorizer == nil {
		return nil, errors.New("registry: an Authenticator and an Authorizer are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	storageDir := filepath.Join(cfg.DataDir, "storage")
	for _, d := range []string{storageDir, filepath.Join(cfg.DataDir, "referrers")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("registry: create %s: %w", d, err)
		}
	}
	key := cfg.TokenKey
	if len(key) == 0 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
	}
	routeEngineLogs(log)

	engine, err := newEngine(ctx, engineConfig(cfg, storageDir, derive(key, "upload state")))
	if err != nil {
		return nil, err
	}
	driver := filesystem.New(filesystem.DriverParameters{RootDirectory: storageDir, MaxThreads: 100})
	ns, err := storage.NewRegistry(ctx, driver, storage.EnableDelete)
	if err != nil {
		_ = engine.Shutdown()
		return nil, fmt.Errorf("registry: open storage: %w", err)
	}
	r := &Registry{
		cfg:       cfg,
		log:       log,
		engine:    engine,
		driver:    driver,
		ns:        ns,
		referrers: &referrersIndex{root: filepath.Join(cfg.DataDir, "referrers")},
		// A blob promised to a client just before a restart is not in
		// the new set, so the set starts as if it had dropped entries
		// now: nothing unreferenced is collected in the first GCGrace.
		touches: touchSet{keep: max(cfg.GCGrace, time.Hour), dropped: time.Now()},
		now:     time.Now,
	}
	r.signer = &signer{key: derive(key, "registry token"), issuer: "gantry-registry", audience: cfg.Service, now: func() time.Time { return r.now() }}
	r.limiter = ratelimit.NewFailLimiter(5, 40)
	r.events = newEventQueue(cfg.OnEvent, log)
	return r, nil
}

// derive makes independent keys for independent uses out of one secret.
func derive(key []byte, use string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("gantry registry: " + use))
	return m.Sum(nil)
}

// newEngine builds the distribution application. NewApp reports
// configuration problems by panicking; turn that into an error.
func newEngine(ctx context.Context, ec *configuration.Configuration) (app *handlers.App, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("registry: start the distribution engine: %v", p)
		}
	}()
	return handlers.NewApp(ctx, ec), nil
}

// engineConfig is the engine's configuration, built in code: filesystem
// storage, deletes on, no redirects, no engine-side auth (the front end
// authorizes before the engine sees a request), no blob descriptor cache
// (the collector deletes blobs behind the engine's back, and a cache
// would keep answering that they exist).
func engineConfig(cfg Config, storageDir string, uploadSecret []byte) *configuration.Configuration {
	ec := &configuration.Configuration{
		Version: configuration.MajorMinorVersion(0, 1),
		Storage: configuration.Storage{
			"filesystem": configuration.Parameters{"rootdirectory": storageDir},
			"delete":     configuration.Parameters{"enabled": true},
			"redirect":   configuration.Parameters{"disable": true},
			"maintenance": configuration.Parameters{"uploadpurging": map[any]any{
				"enabled":  true,
				"age":      cfg.UploadPurgeAge.String(),
				"interval": "1h",
				"dryrun":   false,
			}},
		},
	}
	ec.HTTP.Secret = string(uploadSecret)
	// Manifests may name foreign layers by URL (non-distributable
	// layers); allow http and https ones, which is all the engine takes.
	ec.Validation.Manifests.URLs.Allow = []string{"^https?://"}
	return ec
}

// Handler serves the registry API under /v2/. Mount it at the root of
// the registry's listener.
func (r *Registry) Handler() http.Handler { return r }

// Close stops the engine's background work and delivers queued events.
func (r *Registry) Close() error {
	err := r.engine.Shutdown()
	r.events.close()
	return err
}
