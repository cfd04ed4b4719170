package store

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// EmbedConfig configures the embedded single-member etcd.
type EmbedConfig struct {
	// Dir holds etcd's data (WAL and snapshots) and its sockets.
	Dir string
	// Name is the member name; "gantry" by default.
	Name string
	// CompactionRetention is how much watch history is kept: a watch can
	// resume from any revision written within it. Default 1h.
	CompactionRetention time.Duration
	// QuotaBytes is the size etcd's backend file may reach before etcd
	// refuses writes (its NOSPACE alarm; see KeepSpace). 0 means etcd's
	// default, DefaultQuotaBytes.
	QuotaBytes int64
	Logger     *slog.Logger
}

// Embedded is a running in-process etcd and a client connected to it.
type Embedded struct {
	etcd     *embed.Etcd
	Client   *clientv3.Client
	endpoint string // the client URL, for the per-member maintenance calls
	quota    int64
	log      *slog.Logger
	once     sync.Once
}

// StartEmbedded starts etcd in-process with its data under cfg.Dir,
// listening only on unix sockets in that directory, and returns once it
// serves requests. Writes are fsynced before they are acknowledged (etcd's
// default, which Gantry never turns off).
func StartEmbedded(ctx context.Context, cfg EmbedConfig) (*Embedded, error) {
	if cfg.Name == "" {
		cfg.Name = "gantry"
	}
	if cfg.CompactionRetention == 0 {
		cfg.CompactionRetention = time.Hour
	}
	if cfg.QuotaBytes <= 0 {
		cfg.QuotaBytes = DefaultQuotaBytes
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("etcd data dir: %w", err)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	clientSock := filepath.Join(dir, "client.sock")
	peerSock := filepath.Join(dir, "peer.sock")
	// A previous run killed with -9 leaves its sockets behind.
	os.Remove(clientSock)
	os.Remove(peerSock)

	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = filepath.Join(dir, "data")
	cu := url.URL{Scheme: "unix", Path: clientSock}
	pu := url.URL{Scheme: "unix", Path: peerSock}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	ec.AutoCompactionMode = "periodic"
	ec.AutoCompactionRetention = cfg.CompactionRetention.String()
	ec.QuotaBackendBytes = cfg.QuotaBytes
	ec.Logger = "zap"
	ec.LogLevel = "error"
	ec.LogOutputs = []string{"stderr"}
	// A single member elects itself at once; no need to wait out a full
	// election timeout on start.
	ec.ElectionMs = 100
	ec.TickMs = 10
	// Quiet, but not mute: etcd ends the process with a Fatal on what it
	// cannot survive (a full disk: "failed to save Raft hard state",
	// "failed to commit tx"), and that line is the only reason given.
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(zapcore.NewCore(
		zapcore.NewConsoleEncoder(zap.NewProductionEncoderConfig()), zapcore.Lock(os.Stderr), zapcore.DPanicLevel)))
	// Idle watchers get a progress notification (a bookmark) this often,
	// so they can resume from a recent revision after a disconnect.
	ec.WatchProgressNotifyInterval = 5 * time.Second

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s: %w", dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd failed: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s did not become ready within 60s", dir)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"unix://" + clientSock},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("connect to embedded etcd: %w", err)
	}
	log.Debug("embedded etcd ready", "dir", dir)
	return &Embedded{etcd: e, Client: cli, endpoint: "unix://" + clientSock, quota: cfg.QuotaBytes, log: log}, nil
}

// Err reports a fatal error of the etcd server.
func (e *Embedded) Err() <-chan error { return e.etcd.Err() }

// Close disconnects the client and stops etcd.
// It is safe to call more than once.
func (e *Embedded) Close() {
	e.once.Do(func() {
		e.Client.Close()
		e.etcd.Close()
	})
}

// Connect opens a client to an external etcd cluster.
func Connect(ctx context.Context, endpoints []string) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		Context:     ctx,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %v: %w", endpoints, err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Status(sctx, endpoints[0]); err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd %s is not answering: %w", endpoints[0], err)
	}
	return cli, nil
}
