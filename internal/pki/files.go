package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ErrInsecureKeyFile is returned for a private key file that is not a
// regular file or that group or other users may access.
var ErrInsecureKeyFile = errors.New("insecure private key file")

// EncodeKey renders a private key as a PKCS #8 PEM block.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKey reads a PEM private key (PKCS #8, or SEC 1 EC).
func ParseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM private key")
	}
	switch blk.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse private key: %w", err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("private key of type %T cannot sign", k)
		}
		return s, nil
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse private key: %w", err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("PEM block %q is not a private key", blk.Type)
}

// ParseCert reads the first PEM certificate in b.
func ParseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return c, nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// readPrivateFile reads a file that must be readable by its owner only.
func readPrivateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The mode of the open file, not of the path: nothing can be swapped
	// in between the check and the read.
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w: not a regular file", path, ErrInsecureKeyFile)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s: %w: mode %04o lets group or others access it; run chmod 600 %s", path, ErrInsecureKeyFile, perm, path)
	}
	return io.ReadAll(io.LimitReader(f, 1<<20))
}

// WriteFileAtomic writes data under a fresh temporary name (never one
// that exists, so no mode or link left there applies), syncs it and
// renames it over path: a reader sees the old file or the new one, never
// a torn one, and the file has perm from its first byte.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return writeFile(path, data, perm, os.Rename)
}

// writeFileNew is WriteFileAtomic for a file that must not exist yet: it
// fails with os.ErrExist, and leaves alone, whatever is at path,
// a symbolic link that leads nowhere included.
func writeFileNew(path string, data []byte, perm os.FileMode) error {
	return writeFile(path, data, perm, func(tmp, path string) error {
		if err := os.Link(tmp, path); err != nil {
			return err
		}
		return os.Remove(tmp)
	})
}

func writeFile(path string, data []byte, perm os.FileMode, place func(tmp, path string) error) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = place(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// WriteKeyPair writes NAME.crt (0644) and NAME.key (0600) to dir. The key
// is written first: a crash in between leaves a key without a
// certificate, which LoadKeyPair reports, never a certificate whose key is
// missing.
func WriteKeyPair(dir, name string, certPEM, keyPEM []byte) error {
	if err := WriteFileAtomic(filepath.Join(dir, name+".key"), keyPEM, 0o600); err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, name+".crt"), certPEM, 0o644)
}

// LoadKeyPair reads NAME.crt and NAME.key from dir, refusing a key file
// that group or others may access. The certificate file may carry the
// chain after the leaf.
func LoadKeyPair(dir, name string) (tls.Certificate, error) {
	keyPEM, err := readPrivateFile(filepath.Join(dir, name+".key"))
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, name+".crt"))
	if err != nil {
		return tls.Certificate{}, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("key pair %s in %s: %w", name, dir, err)
	}
	return c, nil
}

// checkPublicKey accepts the key types and sizes Gantry signs for.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if n := k.Curve.Params().BitSize; n < 256 {
			return fmt.Errorf("ECDSA key on a %d-bit curve is too weak (want P-256 or larger)", n)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 {
			return fmt.Errorf("RSA key of %d bits is too weak (want 2048 or more)", n)
		}
	default:
		return fmt.Errorf("unsupported public key type %T", pub)
	}
	return nil
}
