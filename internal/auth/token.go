package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

const tokenPrefix = "gtk_"

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewToken makes a fresh token: its id (the Token object's name), the full
// secret string to hand to the user once, and the hash to store.
func NewToken() (id, full, hash string) {
	var idb [5]byte
	var sec [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		panic(err)
	}
	if _, err := rand.Read(sec[:]); err != nil {
		panic(err)
	}
	id = strings.ToLower(b32.EncodeToString(idb[:]))
	secret := strings.ToLower(b32.EncodeToString(sec[:]))
	return id, tokenPrefix + id + "_" + secret, HashSecret(secret)
}

// HashSecret returns the stored form of a token secret.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// ParseToken splits a token into id and secret.
func ParseToken(tok string) (id, secret string, err error) {
	rest, ok := strings.CutPrefix(tok, tokenPrefix)
	if !ok {
		return "", "", fmt.Errorf("%w: malformed token (expected gtk_…)", v1.ErrUnauthorized)
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || len(id) != 8 || len(secret) != 52 {
		return "", "", fmt.Errorf("%w: malformed token", v1.ErrUnauthorized)
	}
	return id, secret, nil
}

// Identity is an authenticated caller.
type Identity struct {
	User string
	// Node is set for node credentials (agents).
	Node string
	// TokenID names the credential used.
	TokenID string
}

// Anonymous is the identity of an unauthenticated caller.
var Anonymous = &Identity{User: "system:anonymous"}

// NodeUser is the user name node credentials act as.
func NodeUser(node string) string { return "system:node:" + node }

// Authenticator checks bearer tokens against the Token objects in the
// store. It caches verified tokens briefly so that the hot path does not
// read etcd on every request; revocation takes effect within CacheTTL.
type Authenticator struct {
	Store    *store.Store
	CacheTTL time.Duration
	Log      *slog.Logger

	mu    sync.Mutex
	cache map[string]cached // by token id
	// seen is when each token id was last verified against the store.
	seen map[string]time.Time
	// forgets counts Forget calls: a lookup that read the store before
	// one must not cache what it read, which may be the token as it was
	// before its revocation.
	forgets uint64
}

type cached struct {
	hash    string
	id      *Identity
	expires *time.Time
	until   time.Time
}

// afterLookup, when set (by tests), runs between a lookup's store reads
// and its caching of what it read.
var afterLookup func()

// ErrInvalidToken is returned for unknown, expired, revoked or malformed
// tokens; the message never says which, so as not to help a guesser.
var ErrInvalidToken = fmt.Errorf("%w: invalid or expired token", v1.ErrUnauthorized)

// Authenticate returns the identity a token belongs to.
func (a *Authenticator) Authenticate(ctx context.Context, tok string) (*Identity, error) {
	id, secret, err := ParseToken(tok)
	if err != nil {
		return nil, err
	}
	hash := HashSecret(secret)
	now := time.Now()
	c, ok, forgets, err := a.fromCache(id, now)
	if err != nil {
		return nil, err
	}
	if ok {
		if subtle.ConstantTimeCompare([]byte(c.hash), []byte(hash)) != 1 {
			return nil, ErrInvalidToken
		}
		return c.id, nil
	}
	t, ident, err := a.load(ctx, id, now)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(t.Spec.Hash), []byte(hash)) != 1 {
		return nil, ErrInvalidToken
	}
	a.remember(t, ident, now, forgets)
	a.touch(ctx, t)
	return ident, nil
}

// Valid reports whether the token with this id may still be used: it
// exists, is neither revoked nor expired, and its user is not disabled.
// It checks no secret: it is for credentials issued on a token's
// strength (the registry's bearer tokens), which must stop working when
// the token does.
func (a *Authenticator) Valid(ctx context.Context, id string) error {
	now := time.Now()
	_, ok, forgets, err := a.fromCache(id, now)
	if err != nil || ok {
		return err
	}
	t, ident, err := a.load(ctx, id, now)
	if err != nil {
		return err
	}
	a.remember(t, ident, now, forgets)
	return nil
}

// fromCache returns token id's cache entry if it is fresh (ok), or
// ErrInvalidToken if that entry says the token has expired; forgets is
// the Forget count to hand remember after a store read.
func (a *Authenticator) fromCache(id string, now time.Time) (c cached, ok bool, forgets uint64, err error) {
	a.mu.Lock()
	c, ok = a.cache[id]
	forgets = a.forgets
	a.mu.Unlock()
	if !ok || !now.Before(c.until) {
		return cached{}, false, forgets, nil
	}
	if c.expires != nil && now.After(*c.expires) {
		return cached{}, false, forgets, ErrInvalidToken
	}
	return c, true, forgets, nil
}

// load reads token id and checks all of it but its secret.
func (a *Authenticator) load(ctx context.Context, id string, now time.Time) (*v1.Token, *Identity, error) {
	t, err := store.Get[*v1.Token](ctx, a.Store, "", id)
	if errors.Is(err, v1.ErrNotFound) {
		return nil, nil, ErrInvalidToken
	}
	if err != nil {
		return nil, nil, err
	}
	if t.Spec.Revoked || (t.Spec.Expires != nil && now.After(*t.Spec.Expires)) {
		return nil, nil, ErrInvalidToken
	}
	if t.Spec.Node == "" {
		u, err := store.Get[*v1.User](ctx, a.Store, "", t.Spec.User)
		if errors.Is(err, v1.ErrNotFound) {
			return nil, nil, ErrInvalidToken
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read the token's user: %w", err) // the store's trouble, not a bad token
		}
		if u.Spec.Disabled {
			return nil, nil, ErrInvalidToken
		}
	}
	return t, &Identity{User: t.Spec.User, Node: t.Spec.Node, TokenID: id}, nil
}

// remember caches a token read from the store, unless a Forget came
// since the read began (forgets is the count then): what was read may
// be the token as it was before its revocation.
func (a *Authenticator) remember(t *v1.Token, ident *Identity, now time.Time, forgets uint64) {
	if afterLookup != nil {
		afterLookup()
	}
	ttl := a.CacheTTL
	if ttl == 0 {
		ttl = 5 * time.Second
	}
	id := t.Metadata.Name
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cache == nil {
		a.cache = map[string]cached{}
	}
	if a.forgets == forgets {
		a.cache[id] = cached{hash: t.Spec.Hash, id: ident, expires: t.Spec.Expires, until: now.Add(ttl)}
	}
	if a.seen == nil {
		a.seen = map[string]time.Time{}
	}
	a.seen[id] = now // one entry per token, at most
}

// touch records the token's last use at most once a minute.
func (a *Authenticator) touch(ctx context.Context, t *v1.Token) {
	if t.Status.LastUsed != nil && time.Since(*t.Status.LastUsed) < time.Minute {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, err := store.Mutate(ctx, a.Store, "", t.Metadata.Name, func(t *v1.Token) error {
			now := time.Now().UTC().Truncate(time.Second)
			t.Status.LastUsed = &now
			return nil
		})
		if err != nil && a.Log != nil {
			a.Log.Debug("record token use", "token", t.Metadata.Name, "err", err)
		}
	}()
}

// Known reports whether tok's id is that of a token this authenticator
// verified in the last hour (its secret is not checked: Authenticate
// does that). The API server and the registry let a request from an
// address that keeps failing reach the store only with such a token, so
// that its made-up ones cost no store read.
func (a *Authenticator) Known(tok string) bool {
	id, _, err := ParseToken(tok)
	if err != nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.seen[id]
	return ok && time.Since(t) < time.Hour
}

// Forget drops a token from the cache at once (after revoke).
func (a *Authenticator) Forget(id string) {
	a.mu.Lock()
	delete(a.cache, id)
	a.forgets++
	a.mu.Unlock()
}

// ForgetUser drops every cached token of a user at once (after the user
// is disabled).
func (a *Authenticator) ForgetUser(user string) {
	a.mu.Lock()
	for id, c := range a.cache {
		if c.id.Node == "" && c.id.User == user {
			delete(a.cache, id)
		}
	}
	a.forgets++
	a.mu.Unlock()
}

// TokenFor makes a token object for spec, not yet stored, and its secret.
func TokenFor(spec v1.TokenSpec) (*v1.Token, string) {
	id, full, hash := NewToken()
	spec.Hash = hash
	return &v1.Token{TypeMeta: v1.TypeMeta{Kind: "Token"}, Metadata: v1.ObjectMeta{Name: id}, Spec: spec}, full
}

// CreateToken stores a new token for user and returns the full secret
// string, which is not recoverable afterwards.
func CreateToken(ctx context.Context, s *store.Store, spec v1.TokenSpec) (*v1.Token, string, error) {
	t, full := TokenFor(spec)
	if err := s.Create(ctx, t); err != nil {
		return nil, "", fmt.Errorf("store token: %w", err)
	}
	return t, full, nil
}

// AdminUser is the cluster admin that the first start creates.
const AdminUser = "admin"

// Bootstrap creates the first cluster admin, its cluster-admin binding
// and a token for it when the cluster has no users yet, in one
// transaction: a first start stopped half-way leaves all of it or none.
// save, if set, is given the token's secret before the transaction
// commits (to write it where the CLI finds it); a crash between the two
// leaves a secret no token matches, which the next start replaces. It
// returns the secret, or "" when users already existed (their tokens are
// not recoverable).
func Bootstrap(ctx context.Context, s *store.Store, save func(secret string) error) (string, error) {
	users, _, err := store.List[*v1.User](ctx, s, store.ListOptions{Limit: 1})
	if err != nil {
		return "", err
	}
	if len(users) > 0 {
		return completeBootstrap(ctx, s, save)
	}
	u := &v1.User{TypeMeta: v1.TypeMeta{Kind: "User"}, Metadata: v1.ObjectMeta{Name: AdminUser, Labels: map[string]string{"gantry.dev/role": "cluster-admin"}}, Spec: v1.UserSpec{FullName: "Cluster administrator"}}
	tok, full := TokenFor(v1.TokenSpec{User: AdminUser, Description: "created at first start"})
	if save != nil {
		if err := save(full); err != nil {
			return "", err
		}
	}
	if err := s.Txn().Create(u).Create(adminBinding()).Create(tok).Commit(ctx); err != nil {
		return "", fmt.Errorf("create the cluster admin: %w", err)
	}
	return full, nil
}

func adminBinding() *v1.RoleBinding {
	return &v1.RoleBinding{TypeMeta: v1.TypeMeta{Kind: "RoleBinding"}, Metadata: v1.ObjectMeta{Name: "admin-cluster-admin"},
		Spec: v1.RoleBindingSpec{User: AdminUser, Role: RoleClusterAdmin, Namespace: "*"}}
}

// completeBootstrap finishes a first start of an earlier version, which
// stored the admin User, its binding and its token one by one and could
// stop after the User: the admin a first start made (labelled
// gantry.dev/role: cluster-admin) that has no token at all gets its
// binding, if missing, and a new token. It acts only while the cluster
// still looks like that interrupted start: no user holds a token and no
// other binding exists. An admin whose tokens an operator revoked in a
// cluster in use is left alone; a restart must not mint it a new one.
func completeBootstrap(ctx context.Context, s *store.Store, save func(secret string) error) (string, error) {
	u, err := store.Get[*v1.User](ctx, s, "", AdminUser)
	if errors.Is(err, v1.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if u.Metadata.Labels["gantry.dev/role"] != "cluster-admin" {
		return "", nil // not the first start's
	}
	toks, _, err := store.List[*v1.Token](ctx, s, store.ListOptions{})
	if err != nil {
		return "", err
	}
	for _, t := range toks {
		if t.Spec.Node == "" {
			return "", nil // a user has a token: not a first start
		}
	}
	binds, _, err := store.List[*v1.RoleBinding](ctx, s, store.ListOptions{})
	if err != nil {
		return "", err
	}
	missing := true
	for _, b := range binds {
		if b.Metadata.Name != adminBinding().Metadata.Name {
			return "", nil // someone granted roles since: not a first start
		}
		missing = false
	}
	slog.WarnContext(ctx, "auth: completing an interrupted first start: a new token for the cluster admin", "user", AdminUser)
	txn := s.Txn().Unmodified(store.KindFor[*v1.User](), "", AdminUser, u.Metadata.Revision)
	if missing {
		txn = txn.Create(adminBinding())
	}
	tok, full := TokenFor(v1.TokenSpec{User: AdminUser, Description: "created at first start"})
	if save != nil {
		if err := save(full); err != nil {
			return "", err
		}
	}
	if err := txn.Create(tok).Commit(ctx); err != nil {
		return "", fmt.Errorf("complete the cluster admin of an interrupted first start: %w", err)
	}
	return full, nil
}
