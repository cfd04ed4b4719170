// Package secretstest gives tests a secrets codec with a fresh master key.
package secretstest

import (
	"testing"

	"github.com/gantry-dev/gantry/internal/secrets"
)

// Codec returns a codec sealing with a master key of its own.
func Codec(t testing.TB) *secrets.Codec {
	t.Helper()
	key, err := secrets.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := secrets.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	return secrets.NewCodec(kr)
}
