package apiserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/secrets"
	"github.com/gantry-dev/gantry/internal/store"
)

// WithSecrets seals Secret values at rest with codec.
func WithSecrets(c *secrets.Codec) Option { return func(s *Server) { s.secrets = c } }

func toV1(sd *secrets.SealedData, keys []string) *v1.SealedData {
	return &v1.SealedData{KeyID: sd.KeyID, WrappedKey: sd.WrappedKey, Nonce: sd.Nonce, Ciphertext: sd.Ciphertext, Keys: keys}
}

func fromV1(sd *v1.SealedData) *secrets.SealedData {
	return &secrets.SealedData{KeyID: sd.KeyID, WrappedKey: sd.WrappedKey, Nonce: sd.Nonce, Ciphertext: sd.Ciphertext}
}

// writeSecret seals a secret's values and creates or updates it. prev is
// the stored secret (nil to create). It reports whether anything changed.
func (s *Server) writeSecret(ctx context.Context, sec *v1.Secret, prev *v1.Secret, dry bool) (string, error) {
	if s.secrets == nil {
		return "", fmt.Errorf("%w: this server has no secret master key", v1.ErrUnavailable)
	}
	data := sec.MergedData()
	keys := sec.DataKeys()
	if len(data) == 0 && len(sec.Keys) > 0 {
		return "", fmt.Errorf("%w: this secret carries key names but no values (reads never return values); set values with data, stringData or `gantry secret set`", v1.ErrInvalid)
	}
	if prev != nil {
		// "unchanged" says the stored values equal the request's: only
		// for those who may read them. For anyone else it was an oracle
		// (a dry-run apply per guess told a stored PIN without a trace);
		// their writes always write and answer "configured".
		if s.mayReveal(ctx, prev) {
			old, err := s.secrets.Open(prev.Metadata.Namespace, prev.Metadata.Name, fromV1(prev.Sealed))
			if err == nil && maps.EqualFunc(old, data, bytes.Equal) && maps.Equal(prev.Metadata.Labels, sec.Metadata.Labels) &&
				maps.Equal(prev.Metadata.Annotations, sec.Metadata.Annotations) {
				return "unchanged", nil
			}
		}
		sec.Metadata.UID, sec.Metadata.Created, sec.Metadata.Revision = prev.Metadata.UID, prev.Metadata.Created, prev.Metadata.Revision
	} else {
		defer s.HoldQuota(ctx, sec.Metadata.Namespace)()
		if err := s.checkSecretQuota(ctx, sec.Metadata.Namespace); err != nil {
			return "", err
		}
	}
	if dry {
		// The answer is redacted: it names the keys, not the values.
		if prev == nil {
			return "created", nil
		}
		return "configured", nil
	}
	// What is stored is a copy: the request keeps its values until the
	// write succeeds, because an apply that loses a race is tried again
	// with the same request (clearing them here stored the next attempt
	// with no values at all).
	var stored v1.Secret
	err := s.secrets.SealAndWrite(sec.Metadata.Namespace, sec.Metadata.Name, data, func(sd *secrets.SealedData) error {
		stored = *sec
		stored.Sealed = toV1(sd, keys)
		stored.Data, stored.StringData, stored.Keys = nil, nil, nil
		if prev == nil {
			return s.store.Create(ctx, &stored)
		}
		return s.store.Update(ctx, &stored)
	})
	if err != nil {
		return "", err
	}
	*sec = stored
	if prev == nil {
		return "created", nil
	}
	return "configured", nil
}

// mayReveal reports whether the caller may read sec's values, as GET
// secrets/NAME/reveal would be authorized (a node never: it reads only
// what its instances use, and does not write secrets).
func (s *Server) mayReveal(ctx context.Context, sec *v1.Secret) bool {
	if nodeScoped(ctx) != "" {
		return false
	}
	a := auth.Attributes{Verb: "get", Resource: "secrets", Subresource: "reveal", Namespace: sec.Metadata.Namespace, Name: sec.Metadata.Name}
	return s.authz.Authorize(ctx, IdentityFrom(ctx), a) == nil
}

// secretValuesHeader is set on the answer to an apply (or its dry run) of
// an existing Secret whose values were not compared with the stored ones
// because the caller may not read them: its X-Gantry-Result
// "configured" then does not say whether they change (see writeSecret),
// and without the header gantry diff took it for a change every time.
// It depends only on the caller's permission, never on the values.
const secretValuesHeader = "X-Gantry-Secret-Values"

// markUncomparedValues sets secretValuesHeader on the answer to an apply
// of o that answered res, when o is a Secret its caller may not reveal.
func (s *Server) markUncomparedValues(ctx context.Context, w http.ResponseWriter, o v1.Object, res string) {
	sec, ok := o.(*v1.Secret)
	if !ok || res != "configured" || s.mayReveal(ctx, sec) {
		return
	}
	w.Header().Set(secretValuesHeader, "not-compared")
}

func (s *Server) checkSecretQuota(ctx context.Context, ns string) error {
	n, err := store.Get[*v1.Namespace](ctx, s.store, "", ns)
	if err != nil {
		return err
	}
	if n.Spec.Quota == nil || n.Spec.Quota.Secrets == 0 {
		return nil
	}
	l, _, err := store.List[*v1.Secret](ctx, s.store, store.ListOptions{Namespace: ns})
	if err != nil {
		return err
	}
	if len(l)+1 > n.Spec.Quota.Secrets {
		return &QuotaError{ns, "secrets", fmt.Sprint(len(l)), "1", fmt.Sprint(n.Spec.Quota.Secrets)}
	}
	return nil
}

// revealSecret returns a secret's values. The router has authorized
// secrets/reveal; a node may reveal only what an instance bound to it
// uses.
func (s *Server) revealSecret(w http.ResponseWriter, r *http.Request, ri *requestInfo) error {
	ctx := r.Context()
	if s.secrets == nil {
		return fmt.Errorf("%w: this server has no secret master key", v1.ErrUnavailable)
	}
	// ?encoding=base64 answers {"data": {KEY: BASE64}}, byte for byte.
	// Without it the values are text, and bytes that are not UTF-8 come
	// out as U+FFFD: the answer older clients read.
	enc := r.URL.Query().Get("encoding")
	if enc != "" && enc != "base64" {
		return fmt.Errorf("%w: encoding %q: leave it out for text, or give base64", v1.ErrInvalid, enc)
	}
	if node := nodeScoped(ctx); node != "" {
		if !s.nodeUsesSecret(ctx, node, ri.Namespace, ri.Name) {
			return auth.Forbidden(IdentityFrom(ctx), ri.attributes(), "no instance on node "+node+" uses this secret")
		}
	}
	sec, err := store.Get[*v1.Secret](ctx, s.store, ri.Namespace, ri.Name)
	if err != nil {
		return err
	}
	var data map[string][]byte
	if sec.Sealed != nil {
		if data, err = s.secrets.Open(ri.Namespace, ri.Name, fromV1(sec.Sealed)); err != nil {
			return fmt.Errorf("open secret %s: %w", ri.Name, err)
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	if enc == "base64" {
		if data == nil {
			data = map[string][]byte{}
		}
		writeJSON(w, http.StatusOK, map[string]map[string][]byte{"data": data})
		return nil
	}
	out := make(map[string]string, len(data))
	for k, v := range data {
		out[k] = string(v)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) nodeUsesSecret(ctx context.Context, node, ns, name string) bool {
	insts, _, err := store.List[*v1.Instance](ctx, s.store, store.ListOptions{Namespace: ns})
	if err != nil {
		return false
	}
	for _, i := range insts {
		// A finished instance never runs again: its secrets are no
		// longer the node's to read (one kept through a join under a
		// dead node's name would give them to the machine that joined).
		if i.Spec.Node != node || i.Status.Finished() {
			continue
		}
		t := i.Spec.Template
		for _, e := range t.Env {
			if e.Secret != nil && e.Secret.Name == name {
				return true
			}
		}
		for _, f := range t.Files {
			if f.Secret == name {
				return true
			}
		}
	}
	return false
}

// secretStore lets the codec rotate every stored secret with CAS writes.
type secretStore struct{ st *store.Store }

func (a secretStore) List(ctx context.Context) ([]secrets.StoredSecret, error) {
	l, _, err := store.List[*v1.Secret](ctx, a.st, store.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]secrets.StoredSecret, 0, len(l))
	for _, sec := range l {
		if sec.Sealed == nil {
			continue
		}
		out = append(out, secrets.StoredSecret{Namespace: sec.Metadata.Namespace, Name: sec.Metadata.Name, Sealed: fromV1(sec.Sealed), Revision: sec.Metadata.Revision, Ref: sec})
	}
	return out, nil
}

func (a secretStore) Update(ctx context.Context, ss secrets.StoredSecret) error {
	sec := ss.Ref.(*v1.Secret)
	keys := sec.Sealed.Keys
	sec.Sealed = toV1(ss.Sealed, keys)
	return a.st.Update(ctx, sec)
}

// RotateResult is the answer of POST /api/v1/secret-key/rotate.
type RotateResult struct {
	KeyID    string   `json:"keyID"`
	Resealed int      `json:"resealed"`
	Retired  []string `json:"retired"`
	// CompactedRevision is the store revision the history was compacted
	// to afterwards, so that no earlier revision sealed with a retired
	// key is still served; 0 if the compaction failed (a warning says
	// why).
	CompactedRevision int64  `json:"compactedRevision"`
	Took              string `json:"took"`
}

// rotateKey re-encrypts every secret under a new master key while the
// cluster keeps serving (cluster admins only: update on secretkeys).
func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	if s.secrets == nil {
		return fmt.Errorf("%w: this server has no secret master key", v1.ErrUnavailable)
	}
	res, err := s.secrets.Rotate(r.Context(), secretStore{s.store}, s.log)
	if err != nil {
		if errors.Is(err, secrets.ErrUnknownKey) {
			err = fmt.Errorf("%w: %v", v1.ErrUnprocessable, err)
		}
		return err
	}
	retired := slices.Clone(res.Retired)
	if retired == nil {
		retired = []string{}
	}
	// etcd keeps the earlier revisions of every resealed secret, sealed
	// with the old key, until its history is compacted.
	compacted, err := s.store.CompactHistory(r.Context())
	if err != nil {
		s.log.Warn("secret key rotated, but the store's history was not compacted", "err", err)
		warn(w, fmt.Sprintf("the store's history was not compacted (%v): earlier revisions sealed with the old key stay readable to whoever holds that key until etcd compacts them (within an hour)", err))
	}
	writeJSON(w, http.StatusOK, RotateResult{KeyID: res.KeyID, Resealed: res.Resealed, Retired: retired, CompactedRevision: compacted,
		Took: time.Since(start).Round(time.Millisecond).String()})
	return nil
}
