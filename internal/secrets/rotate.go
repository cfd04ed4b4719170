package secrets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// StoredSecret is one secret as the store holds it.
type StoredSecret struct {
	Namespace string
	Name      string
	Sealed    *SealedData
	// Revision is the store revision the secret was read at; Update
	// writes only if the secret is still at it.
	Revision int64
	// Ref is for the SecretStore implementation's own use (the object
	// it read, say); Rotate hands it back untouched.
	Ref any
}

// SecretStore is the view of the store that Rotate needs.
type SecretStore interface {
	// List returns every stored secret, in all namespaces.
	List(ctx context.Context) ([]StoredSecret, error)
	// Update replaces the sealed data of s if the secret is still at
	// s.Revision. It fails with an error wrapping v1.ErrConflict if the
	// secret changed since, and v1.ErrNotFound if it is gone.
	Update(ctx context.Context, s StoredSecret) error
}

// RotateResult says what a rotation did.
type RotateResult struct {
	// KeyID is the master key every secret is sealed with now.
	KeyID string
	// Resealed counts the secrets the rotation re-encrypted.
	Resealed int
	// Retired lists the IDs of the keys removed from the keyring.
	Retired []string
	// Passes counts the passes over the store; more than one means
	// secrets changed while the rotation ran.
	Passes int
}

// maxPasses bounds the passes over the store: each pass reseals what the
// last one lost to a concurrent write, and concurrent writers seal with
// the new key, so a pass that finds work left is rare and a tenth never
// happens unless writers keep restoring old data.
const maxPasses = 10

// Rotate re-encrypts every stored secret under a new master key and
// retires the old ones, while the API keeps serving.
//
// The protocol:
//
//  1. Make the new key the sealing key, keeping the old ones for opening.
//     The key file is rewritten before any secret uses the new key, so a
//     crash can lose no key that something is sealed with. The switch
//     waits for every SealAndWrite in flight, so after it nothing in this
//     process stores a secret under an old key.
//  2. Pass over the store: open each secret not sealed with the new key
//     and seal it again, with a fresh data key, writing it back with
//     compare-and-swap. A write that loses to a concurrent update is not
//     retried blindly: the winner sealed with the new key, and the next
//     pass checks. Repeat until a pass finds nothing left to do.
//  3. Retire the old keys: drop them from the keyring and the key file.
//
// Every secret gets a new data key, not just a new wrapping of the old
// one: otherwise an old master key together with an old copy of a wrapped
// data key (a backup, etcd history not yet compacted) would still open
// today's ciphertext.
//
// A rotation interrupted after step 1 leaves the keyring with several
// keys; running Rotate again finishes it with the key it already made.
// For keys from GANTRY_MASTER_KEY, Rotate cannot make or retire keys: the
// operator puts the new key first in the variable on every server and
// restarts them, Rotate moves the secrets onto it and drops the others
// from memory, and the operator then removes them from the variable.
//
// In a cluster of servers every server must hold the same keys; Rotate
// fences only the writers in its own process.
//
// Rotate changes the current values only. etcd keeps earlier revisions,
// sealed with the old key, until they are compacted, and its WAL until the
// segments are purged; the caller should compact the store to the current
// revision (and defragment) afterwards so the old key opens nothing that
// the store still serves.
func (c *Codec) Rotate(ctx context.Context, st SecretStore, log *slog.Logger) (RotateResult, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c.rotating.Lock()
	defer c.rotating.Unlock()

	var res RotateResult
	switch ids := c.kr.IDs(); {
	case len(ids) > 1:
		log.Info("finishing master key rotation", "key", ids[0], "old", ids[1:])
	case c.kr.FromEnv():
		return res, fmt.Errorf("%w: the master key comes from %s, so rotation needs the new key there: set %s=NEW,OLD (new key first, base64) on every server, restart them, then rotate again", v1.ErrUnprocessable, EnvMasterKey, EnvMasterKey)
	default:
		k, err := GenerateKey()
		if err != nil {
			return res, err
		}
		c.fence.Lock()
		err = c.kr.promote(k)
		c.fence.Unlock()
		clear(k)
		if err != nil {
			return res, fmt.Errorf("rotate master key: %w", err)
		}
		log.Info("new master key", "key", c.kr.CurrentID(), "old", ids[0])
	}
	target := c.kr.CurrentID()
	res.KeyID = target

	for {
		res.Passes++
		pending, lost, err := c.rotatePass(ctx, st, target, &res)
		if err != nil {
			return res, err
		}
		log.Info("master key rotation pass", "pass", res.Passes, "resealed", res.Resealed, "pending", pending, "lostToWrites", lost)
		if pending == 0 {
			break
		}
		if res.Passes >= maxPasses {
			return res, fmt.Errorf("rotate master key: %d secrets still sealed with old keys after %d passes: %w; run the rotation again", pending, res.Passes, v1.ErrConflict)
		}
	}

	retired, err := c.kr.retire()
	if err != nil {
		return res, fmt.Errorf("retire old master keys: %w", err)
	}
	res.Retired = retired
	log.Info("master key rotation done", "key", target, "resealed", res.Resealed, "retired", retired)
	return res, nil
}

// rotatePass reseals every listed secret not sealed with target. It
// returns how many secrets needed it and how many of those lost their
// write to a concurrent update (and must be looked at again).
func (c *Codec) rotatePass(ctx context.Context, st SecretStore, target string, res *RotateResult) (pending, lost int, err error) {
	list, err := st.List(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("rotate master key: list secrets: %w", err)
	}
	k := c.kr.current()
	if k.id != target {
		return 0, 0, fmt.Errorf("rotate master key: the sealing key changed during the rotation (now %s, rotating to %s)", k.id, target)
	}
	for _, s := range list {
		if s.Sealed == nil || s.Sealed.KeyID == target {
			// No sealed data means no values: nothing to move.
			continue
		}
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		pending++
		data, err := c.Open(s.Namespace, s.Name, s.Sealed)
		if err != nil {
			// Retiring keys would not make this secret any less
			// readable, but the operator should know before the
			// old keys are gone: stop here.
			return 0, 0, fmt.Errorf("rotate master key: %w", err)
		}
		s.Sealed, err = seal(k, s.Namespace, s.Name, data)
		clearValues(data)
		if err != nil {
			return 0, 0, err
		}
		switch err := st.Update(ctx, s); {
		case err == nil:
			res.Resealed++
			pending--
		case errors.Is(err, v1.ErrNotFound):
			pending--
		case errors.Is(err, v1.ErrConflict):
			lost++
		default:
			return 0, 0, fmt.Errorf("rotate master key: store secret %s/%s: %w", s.Namespace, s.Name, err)
		}
	}
	return pending, lost, nil
}

func clearValues(data map[string][]byte) {
	for _, v := range data {
		clear(v)
	}
}
