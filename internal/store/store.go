package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// DefaultPrefix is the etcd key prefix under which all objects live.
const DefaultPrefix = "/gantry/"

// Store is a typed view of etcd. It is safe for concurrent use.
type Store struct {
	cli    *clientv3.Client
	prefix string
	now    func() time.Time

	expMu sync.Mutex
	exp   map[time.Duration]*expiring
}

// New wraps an etcd client. prefix defaults to DefaultPrefix.
func New(cli *clientv3.Client, prefix string) *Store {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &Store{cli: cli, prefix: prefix, now: time.Now}
}

// Client returns the underlying etcd client, for leases and health checks.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Key returns the etcd key of an object.
func (s *Store) Key(k *v1.KindInfo, ns, name string) string {
	if k.Namespaced {
		return s.prefix + k.Plural + "/" + ns + "/" + name
	}
	return s.prefix + k.Plural + "/" + name
}

// listPrefix returns the key prefix of every object of a kind, or of one
// namespace when ns is set.
func (s *Store) listPrefix(k *v1.KindInfo, ns string) string {
	if k.Namespaced && ns != "" {
		return s.prefix + k.Plural + "/" + ns + "/"
	}
	return s.prefix + k.Plural + "/"
}

func kindOf(o v1.Object) (*v1.KindInfo, error) {
	k, err := v1.KindOf(o)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", v1.ErrInvalid, err)
	}
	return k, nil
}

// encode marshals an object without its revision: the revision is the
// etcd mod revision, filled in on every read.
func encode(o v1.Object) ([]byte, error) {
	m := o.GetMeta()
	rev := m.Revision
	m.Revision = 0
	b, err := json.Marshal(o)
	m.Revision = rev
	if err != nil {
		return nil, fmt.Errorf("encode %s %s: %w", o.GetType().Kind, m.Key(), err)
	}
	return b, nil
}

func decode(k *v1.KindInfo, b []byte, rev int64) (v1.Object, error) {
	o := k.New()
	if err := json.Unmarshal(b, o); err != nil {
		return nil, fmt.Errorf("decode stored %s: %w", k.Kind, err)
	}
	*o.GetType() = v1.TypeMeta{Kind: k.Kind, APIVersion: v1.Version}
	o.GetMeta().Revision = rev
	return o, nil
}

func newUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// prepareCreate fills in the fields that creation sets.
func (s *Store) prepareCreate(o v1.Object) {
	m := o.GetMeta()
	m.UID = newUID()
	if m.Created.IsZero() {
		m.Created = s.now().UTC().Truncate(time.Millisecond)
	}
	t := o.GetType()
	if t.APIVersion == "" {
		t.APIVersion = v1.Version
	}
}

// Create stores a new object and fails with ErrAlreadyExists if one of that
// name exists. On success o carries its UID, creation time and revision.
func (s *Store) Create(ctx context.Context, o v1.Object, opts ...clientv3.OpOption) error {
	op, cmp, err := s.createOp(o, opts...)
	if err != nil {
		return err
	}
	resp, err := s.cli.Txn(ctx).If(cmp).Then(op).Commit()
	if err != nil {
		return fmt.Errorf("create %s %s: %w", o.GetType().Kind, o.GetMeta().Key(), unavailable(err))
	}
	if !resp.Succeeded {
		return fmt.Errorf("%s %q %w", strings.ToLower(o.GetType().Kind), o.GetMeta().Key(), v1.ErrAlreadyExists)
	}
	o.GetMeta().Revision = resp.Header.Revision
	return nil
}

func (s *Store) createOp(o v1.Object, opts ...clientv3.OpOption) (clientv3.Op, clientv3.Cmp, error) {
	k, err := kindOf(o)
	if err != nil {
		return clientv3.Op{}, clientv3.Cmp{}, err
	}
	s.prepareCreate(o)
	b, err := encode(o)
	if err != nil {
		return clientv3.Op{}, clientv3.Cmp{}, err
	}
	key := s.Key(k, o.GetMeta().Namespace, o.GetMeta().Name)
	return clientv3.OpPut(key, string(b), opts...), clientv3.Compare(clientv3.CreateRevision(key), "=", 0), nil
}

// Get reads one object. Reads are linearizable.
func (s *Store) Get(ctx context.Context, k *v1.KindInfo, ns, name string) (v1.Object, error) {
	resp, err := s.cli.Get(ctx, s.Key(k, ns, name))
	if err != nil {
		return nil, fmt.Errorf("get %s %s/%s: %w", k.Kind, ns, name, unavailable(err))
	}
	if len(resp.Kvs) == 0 {
		return nil, notFound(k, ns, name)
	}
	return decode(k, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
}

func notFound(k *v1.KindInfo, ns, name string) error {
	if k.Namespaced {
		return fmt.Errorf("%s %q %w in namespace %q", strings.ToLower(k.Kind), name, v1.ErrNotFound, ns)
	}
	return fmt.Errorf("%s %q %w", strings.ToLower(k.Kind), name, v1.ErrNotFound)
}

// Get reads one object of type T.
func Get[T v1.Object](ctx context.Context, s *Store, ns, name string) (T, error) {
	var zero T
	k, err := kindFor[T]()
	if err != nil {
		return zero, err
	}
	o, err := s.Get(ctx, k, ns, name)
	if err != nil {
		return zero, err
	}
	return o.(T), nil
}

// kindFor finds the registered kind whose New returns a T.
func kindFor[T v1.Object]() (*v1.KindInfo, error) {
	for _, k := range v1.Kinds() {
		if _, ok := k.New().(T); ok {
			return k, nil
		}
	}
	var zero T
	return nil, fmt.Errorf("%w: type %T is not a registered kind", v1.ErrInvalid, zero)
}

// KindFor returns the registered kind of type T; it panics if T is not a
// registered kind, which is a programming error.
func KindFor[T v1.Object]() *v1.KindInfo {
	k, err := kindFor[T]()
	if err != nil {
		panic(err)
	}
	return k
}

// ListOptions narrow a List.
type ListOptions struct {
	Namespace string      // empty: every namespace
	Selector  v1.Selector // nil: every object
	Limit     int64       // 0: no limit
	// Revision reads the list as it was at that store revision (0: now).
	Revision int64
}

// List reads every object of a kind that matches opts, sorted by key, and
// the store revision the list was read at: a watch from that revision + 1
// misses nothing.
func (s *Store) List(ctx context.Context, k *v1.KindInfo, opts ListOptions) ([]v1.Object, int64, error) {
	ropts := []clientv3.OpOption{clientv3.WithPrefix()}
	if opts.Limit > 0 && opts.Selector == nil {
		ropts = append(ropts, clientv3.WithLimit(opts.Limit))
	}
	if opts.Revision > 0 {
		ropts = append(ropts, clientv3.WithRev(opts.Revision))
	}
	resp, err := s.cli.Get(ctx, s.listPrefix(k, opts.Namespace), ropts...)
	if err != nil {
		if errors.Is(err, rpcCompacted) {
			return nil, 0, fmt.Errorf("list %s at revision %d: %w", k.Plural, opts.Revision, v1.ErrResyncRequired)
		}
		return nil, 0, fmt.Errorf("list %s: %w", k.Plural, unavailable(err))
	}
	out := make([]v1.Object, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		o, err := decode(k, kv.Value, kv.ModRevision)
		if err != nil {
			// Failed whole, not left out: left out, it would look
			// deleted to every controller. The key says what to mend.
			return nil, 0, fmt.Errorf("list %s: %s: %w", k.Plural, kv.Key, err)
		}
		if opts.Selector.Matches(o.GetMeta().Labels) {
			out = append(out, o)
		}
		if opts.Limit > 0 && int64(len(out)) >= opts.Limit {
			break
		}
	}
	// The header carries the store's current revision, not the one the
	// list was read at; a watch from the former would skip what came
	// between.
	rev := resp.Header.Revision
	if opts.Revision > 0 {
		rev = opts.Revision
	}
	return out, rev, nil
}

// List reads every object of type T that matches opts.
func List[T v1.Object](ctx context.Context, s *Store, opts ListOptions) ([]T, int64, error) {
	k, err := kindFor[T]()
	if err != nil {
		return nil, 0, err
	}
	objs, rev, err := s.List(ctx, k, opts)
	if err != nil {
		return nil, 0, err
	}
	out := make([]T, len(objs))
	for i, o := range objs {
		out[i] = o.(T)
	}
	return out, rev, nil
}

// Update writes o if it is unchanged since it was read at
// o.GetMeta().Revision; otherwise it fails with ErrConflict (or ErrNotFound
// if the object is gone). It writes o as it is: the caller keeps UID and
// creation time as they were read (the API server copies them from the
// stored object; a client cannot change them).
func (s *Store) Update(ctx context.Context, o v1.Object) error {
	op, cmps, err := s.updateOp(o)
	if err != nil {
		return err
	}
	k, _ := kindOf(o)
	m := o.GetMeta()
	key := s.Key(k, m.Namespace, m.Name)
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(op).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return fmt.Errorf("update %s %s: %w", k.Kind, m.Key(), unavailable(err))
	}
	if !resp.Succeeded {
		return s.conflict(k, m, resp)
	}
	m.Revision = resp.Header.Revision
	return nil
}

func (s *Store) updateOp(o v1.Object) (clientv3.Op, []clientv3.Cmp, error) {
	k, err := kindOf(o)
	if err != nil {
		return clientv3.Op{}, nil, err
	}
	m := o.GetMeta()
	if m.Revision == 0 {
		return clientv3.Op{}, nil, fmt.Errorf("%w: update of %s %s needs metadata.revision (read the object first)", v1.ErrInvalid, k.Kind, m.Key())
	}
	b, err := encode(o)
	if err != nil {
		return clientv3.Op{}, nil, err
	}
	key := s.Key(k, m.Namespace, m.Name)
	return clientv3.OpPut(key, string(b)), []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", m.Revision)}, nil
}

func (s *Store) conflict(k *v1.KindInfo, m *v1.ObjectMeta, resp *clientv3.TxnResponse) error {
	if len(resp.Responses) > 0 {
		if rr := resp.Responses[0].GetResponseRange(); rr != nil && len(rr.Kvs) == 0 {
			return notFound(k, m.Namespace, m.Name)
		}
		if rr := resp.Responses[0].GetResponseRange(); rr != nil && len(rr.Kvs) == 1 {
			return fmt.Errorf("%s %q was modified (now at revision %d, you read %d): %w; read it again and retry",
				strings.ToLower(k.Kind), m.Key(), rr.Kvs[0].ModRevision, m.Revision, v1.ErrConflict)
		}
	}
	return fmt.Errorf("%s %q: %w", strings.ToLower(k.Kind), m.Key(), v1.ErrConflict)
}

// Delete removes an object. When rev is non-zero the delete happens only if
// the object is still at that revision. It returns the object as it was.
func (s *Store) Delete(ctx context.Context, k *v1.KindInfo, ns, name string, rev int64) (v1.Object, error) {
	key := s.Key(k, ns, name)
	var cmp clientv3.Cmp
	if rev > 0 {
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", rev)
	} else {
		cmp = clientv3.Compare(clientv3.CreateRevision(key), ">", 0)
	}
	resp, err := s.cli.Txn(ctx).If(cmp).Then(clientv3.OpDelete(key, clientv3.WithPrevKV())).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return nil, fmt.Errorf("delete %s %s/%s: %w", k.Kind, ns, name, unavailable(err))
	}
	if !resp.Succeeded {
		return nil, s.conflict(k, &v1.ObjectMeta{Namespace: ns, Name: name, Revision: rev}, resp)
	}
	dr := resp.Responses[0].GetResponseDeleteRange()
	if dr == nil || len(dr.PrevKvs) == 0 {
		return nil, notFound(k, ns, name)
	}
	return decode(k, dr.PrevKvs[0].Value, dr.PrevKvs[0].ModRevision)
}

// Mutate reads an object, applies fn and writes the result with
// compare-and-swap, retrying on conflict. fn may be called several times and
// must be a pure function of the object it gets. Returning ErrUnchanged
// from fn skips the write.
func Mutate[T v1.Object](ctx context.Context, s *Store, ns, name string, fn func(T) error) (T, error) {
	var zero T
	for attempt := 0; ; attempt++ {
		o, err := Get[T](ctx, s, ns, name)
		if err != nil {
			return zero, err
		}
		if err := fn(o); err != nil {
			if errors.Is(err, ErrUnchanged) {
				return o, nil
			}
			return zero, err
		}
		err = s.Update(ctx, o)
		if err == nil {
			return o, nil
		}
		if !errors.Is(err, v1.ErrConflict) || attempt >= 50 {
			return zero, err
		}
		if err := ctx.Err(); err != nil {
			return zero, err
		}
	}
}

// ErrUnchanged tells Mutate there is nothing to write.
var ErrUnchanged = errors.New("unchanged")

// Txn builds a multi-object transaction: all of its writes happen, or
// none (and the caller learns why).
type Txn struct {
	s    *Store
	cmps []clientv3.Cmp
	ops  []clientv3.Op
	objs []v1.Object // written objects, to set revisions on success
	errs []error
	what []string
}

// Txn starts a transaction.
func (s *Store) Txn() *Txn { return &Txn{s: s} }

// Create adds the creation of o; the transaction fails with
// ErrAlreadyExists if it exists.
func (t *Txn) Create(o v1.Object) *Txn {
	op, cmp, err := t.s.createOp(o)
	if err != nil {
		t.errs = append(t.errs, err)
		return t
	}
	t.cmps, t.ops, t.objs = append(t.cmps, cmp), append(t.ops, op), append(t.objs, o)
	t.what = append(t.what, "create "+strings.ToLower(o.GetType().Kind)+" "+o.GetMeta().Key())
	return t
}

// Update adds a compare-and-swap update of o.
func (t *Txn) Update(o v1.Object) *Txn {
	op, cmps, err := t.s.updateOp(o)
	if err != nil {
		t.errs = append(t.errs, err)
		return t
	}
	t.cmps, t.ops, t.objs = append(t.cmps, cmps...), append(t.ops, op), append(t.objs, o)
	t.what = append(t.what, "update "+strings.ToLower(o.GetType().Kind)+" "+o.GetMeta().Key())
	return t
}

// Delete adds the deletion of an object, conditional on rev when non-zero.
func (t *Txn) Delete(k *v1.KindInfo, ns, name string, rev int64) *Txn {
	key := t.s.Key(k, ns, name)
	if rev > 0 {
		t.cmps = append(t.cmps, clientv3.Compare(clientv3.ModRevision(key), "=", rev))
	}
	t.ops = append(t.ops, clientv3.OpDelete(key))
	t.what = append(t.what, "delete "+strings.ToLower(k.Kind)+" "+ns+"/"+name)
	return t
}

// Unmodified makes the transaction conditional on an object still being
// at revision rev, without writing it.
func (t *Txn) Unmodified(k *v1.KindInfo, ns, name string, rev int64) *Txn {
	t.cmps = append(t.cmps, clientv3.Compare(clientv3.ModRevision(t.s.Key(k, ns, name)), "=", rev))
	t.what = append(t.what, "check "+strings.ToLower(k.Kind)+" "+ns+"/"+name)
	return t
}

// MaxTxnOps is how many writes one transaction may carry: etcd's default
// (--max-txn-ops), which the embedded etcd keeps.
const MaxTxnOps = 128

// Commit runs the transaction. On a failed precondition it returns
// ErrConflict naming the operations involved; nothing was written.
func (t *Txn) Commit(ctx context.Context) error {
	if err := errors.Join(t.errs...); err != nil {
		return err
	}
	if len(t.ops) > MaxTxnOps {
		// etcd refuses it whole; sending it again would not help.
		return fmt.Errorf("transaction (%s): %d operations, more than the store takes at once (%d): %w", strings.Join(t.what, ", "), len(t.ops), MaxTxnOps, v1.ErrInvalid)
	}
	resp, err := t.s.cli.Txn(ctx).If(t.cmps...).Then(t.ops...).Commit()
	if err != nil {
		return fmt.Errorf("transaction (%s): %w", strings.Join(t.what, ", "), unavailable(err))
	}
	if !resp.Succeeded {
		return fmt.Errorf("transaction (%s): another writer changed one of these objects: %w", strings.Join(t.what, ", "), v1.ErrConflict)
	}
	for _, o := range t.objs {
		o.GetMeta().Revision = resp.Header.Revision
	}
	return nil
}

// Revision returns the store's current revision.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	resp, err := s.cli.Get(ctx, s.prefix+"\x00revision-probe", clientv3.WithCountOnly())
	if err != nil {
		return 0, unavailable(err)
	}
	return resp.Header.Revision, nil
}

// CompactHistory drops every revision of the store older than the
// current one (etcd's compaction, physical: it returns once the old
// values are gone from what etcd serves) and returns that revision.
// Watchers behind it start again from a list, as after etcd's periodic
// compaction. Secret key rotation uses it so that no earlier revision
// sealed with a retired key stays readable.
func (s *Store) CompactHistory(ctx context.Context) (int64, error) {
	rev, err := s.Revision(ctx)
	if err != nil {
		return 0, err
	}
	if _, err := s.cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		return 0, fmt.Errorf("compact the store to revision %d: %w", rev, unavailable(err))
	}
	return rev, nil
}

// MaxWriteBytes is about the most one write (a transaction) may carry:
// etcd's default request limit.
const MaxWriteBytes = 3 << 19 // 1.5 MiB

func unavailable(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if tooLarge(err) {
		// Not a failure of the store, and sending it again will not
		// help: the client must send less.
		return fmt.Errorf("%w: the write is larger than the store takes (%d KiB at most)", v1.ErrTooLarge, MaxWriteBytes>>10)
	}
	if noSpace(err) {
		return fmt.Errorf("%w: the store is full: etcd's database reached its space quota and refuses writes until space is reclaimed (reads and deletes still work; the embedded store reclaims space on its own within a minute once deleted objects free enough, see the guide's \"Store space\")", v1.ErrUnavailable)
	}
	return fmt.Errorf("%w: etcd: %v", v1.ErrUnavailable, err)
}

// tooLarge reports whether etcd, or the gRPC client before it, refused a
// request for its size.
func tooLarge(err error) bool {
	if errors.Is(err, rpctypes.ErrRequestTooLarge) || errors.Is(err, rpctypes.ErrGRPCRequestTooLarge) {
		return true
	}
	// The client's own send limit; etcd uses ResourceExhausted for a
	// full database and for too many requests too.
	s, ok := status.FromError(err)
	return ok && s.Code() == codes.ResourceExhausted && strings.Contains(s.Message(), "larger than max")
}
