package server

import (
	"context"
	"crypto"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
	"github.com/gantry-dev/gantry/internal/pki"
	"github.com/gantry-dev/gantry/internal/secrets/secretstest"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

func routeCertsFor(t *testing.T, services ...*discovery.Service) (*routeCerts, *pki.CA) {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]*discovery.Service{}
	for _, s := range services {
		m[s.Key()] = s
	}
	src := discovery.NewBroadcaster()
	src.Publish(&discovery.Snapshot{Revision: 1, Services: m})
	return &routeCerts{src: src, ca: ca, dir: t.TempDir()}, ca
}

// A tls: auto wildcard route has one certificate, for the wildcard,
// whatever names clients send: before, each new name made the CA issue
// (and the disk and the cache keep) one more, a cheap way to burn the
// server's CPU from outside.
func TestAutoWildcardRouteHasOneCertificate(t *testing.T) {
	c, _ := routeCertsFor(t, &discovery.Service{Namespace: "b", Name: "tenants",
		Routes: []v1.Route{{Host: "*.tenants.example.com", TLS: "auto"}, {Host: "shop.example.com", TLS: "auto"}}})
	var first *tls.Certificate
	for i := range 50 {
		name := fmt.Sprintf("x%d.tenants.example.com", i)
		cert, err := c.GetCertificate(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := cert.Leaf.VerifyHostname(name); err != nil {
			t.Fatalf("the certificate served for %s does not cover it: %v", name, err)
		}
		if first == nil {
			first = cert
		} else if cert.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) != 0 {
			t.Fatalf("%s got a certificate of its own", name)
		}
	}
	shop, err := c.GetCertificate("SHOP.example.com.")
	if err != nil {
		t.Fatal(err)
	}
	if err := shop.Leaf.VerifyHostname("shop.example.com"); err != nil {
		t.Fatal(err)
	}
	files, _ := os.ReadDir(c.dir)
	if len(c.auto) != 2 || len(files) != 4 {
		t.Errorf("%d certificates kept and %d files written for two routes, want 2 and 4", len(c.auto), len(files))
	}
	if _, err := c.GetCertificate("a.b.tenants.example.com"); !errors.Is(err, v1.ErrNotFound) {
		t.Errorf("a name two labels under the wildcard: %v, want not found", err)
	}
}

// secretCerts is a routeCerts serving *.shop.example.com from Secret
// a/shop-cert in st; put stores a new certificate in that Secret, putData
// whatever data it is given.
func secretCerts(t *testing.T, st *store.Store) (c *routeCerts, put func() *tls.Certificate, putData func(map[string][]byte)) {
	t.Helper()
	codec := secretstest.Codec(t)
	c, ca := routeCertsFor(t, &discovery.Service{Namespace: "a", Name: "shop",
		Routes: []v1.Route{{Host: "*.shop.example.com", TLS: "shop-cert"}}})
	c.store, c.codec = st, codec
	putData = func(data map[string][]byte) {
		t.Helper()
		sd, err := codec.Seal("a", "shop-cert", data)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		sealed := &v1.SealedData{KeyID: sd.KeyID, WrappedKey: sd.WrappedKey, Nonce: sd.Nonce, Ciphertext: sd.Ciphertext}
		sec, err := store.Get[*v1.Secret](ctx, st, "a", "shop-cert")
		switch {
		case errors.Is(err, v1.ErrNotFound):
			err = st.Create(ctx, &v1.Secret{TypeMeta: v1.TypeMeta{Kind: "Secret"}, Metadata: v1.ObjectMeta{Namespace: "a", Name: "shop-cert"}, Sealed: sealed})
		case err == nil:
			sec.Sealed = sealed
			err = st.Update(ctx, sec)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	put = func() *tls.Certificate {
		t.Helper()
		cert, err := ca.IssueServer([]string{"*.shop.example.com"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, err := pki.EncodeKey(cert.PrivateKey.(crypto.Signer))
		if err != nil {
			t.Fatal(err)
		}
		putData(map[string][]byte{"tls.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), "tls.key": keyPEM})
		return &cert
	}
	return c, put, putData
}

func (c *routeCerts) serial(t *testing.T, host string) string {
	t.Helper()
	got, err := c.GetCertificate(host)
	if err != nil {
		t.Fatal(err)
	}
	return got.Leaf.SerialNumber.String()
}

// age makes the cached certificate of *.shop.example.com due for a
// recheck.
func (c *routeCerts) age() {
	if e, ok := c.fromSecret["*.shop.example.com"]; ok {
		e.checked = time.Now().Add(-secretRecheck)
		c.fromSecret["*.shop.example.com"] = e
	}
}

// A certificate from a Secret is read from etcd at most every
// secretRecheck, not on every handshake; a replaced one is served after
// that, a deleted Secret stops it, and a route that is gone takes its
// certificate out of memory when another is added.
func TestSecretCertificateIsRecheckedNotReadPerHandshake(t *testing.T) {
	ctx := context.Background()
	st := storetest.New(t)
	c, put, putData := secretCerts(t, st)
	want1 := put().Leaf.SerialNumber.String()
	for i := range 20 {
		if got := c.serial(t, fmt.Sprintf("n%d.shop.example.com", i)); got != want1 {
			t.Fatalf("serial %s, want %s", got, want1)
		}
	}
	if len(c.fromSecret) != 1 {
		t.Fatalf("%d certificates kept for one wildcard route", len(c.fromSecret))
	}

	want2 := put().Leaf.SerialNumber.String()
	if got := c.serial(t, "n1.shop.example.com"); got != want1 {
		t.Fatalf("within secretRecheck the certificate was read again (serial %s)", got)
	}
	c.age()
	if got := c.serial(t, "n1.shop.example.com"); got != want2 {
		t.Fatalf("after secretRecheck: serial %s, want the replaced certificate's %s", got, want2)
	}

	// Replaced by something that is no certificate, it fails every
	// handshake alike, not one in each recheck.
	putData(map[string][]byte{"tls.crt": []byte("not PEM"), "tls.key": []byte("nor this")})
	c.age()
	for i := range 3 {
		if _, err := c.GetCertificate("n1.shop.example.com"); err == nil || !strings.Contains(err.Error(), "must hold a PEM certificate") {
			t.Fatalf("handshake %d after a broken replacement: %v, want it refused", i, err)
		}
	}
	put()

	if _, err := st.Delete(ctx, store.KindFor[*v1.Secret](), "a", "shop-cert", 0); err != nil {
		t.Fatal(err)
	}
	c.age()
	for range 2 {
		if _, err := c.GetCertificate("n1.shop.example.com"); !errors.Is(err, v1.ErrNotFound) {
			t.Fatalf("the Secret is deleted: %v, want not found", err)
		}
	}

	// A missing Secret is remembered as missing for secretRecheck, so
	// that handshakes for its host do not each read etcd: made again, it
	// is served after that.
	put()
	if _, err := c.GetCertificate("n1.shop.example.com"); !errors.Is(err, v1.ErrNotFound) {
		t.Fatalf("within secretRecheck of finding the Secret missing: %v, want not found", err)
	}
	c.age()
	c.serial(t, "n1.shop.example.com")
	c.src.(*discovery.Broadcaster).Publish(&discovery.Snapshot{Revision: 2, Services: map[string]*discovery.Service{
		"b/dev": {Namespace: "b", Name: "dev", Routes: []v1.Route{{Host: "dev.example.com", TLS: "auto"}}}}})
	if _, err := c.GetCertificate("dev.example.com"); err != nil {
		t.Fatal(err)
	}
	if len(c.fromSecret) != 0 {
		t.Errorf("the certificate of a route that is gone is still kept")
	}
}

// With etcd gone, HTTPS goes on with the certificate it had, and only one
// handshake per secretRecheck waits for etcd's answer.
func TestSecretCertificateOutlivesAnEtcdOutage(t *testing.T) {
	e := storetest.Embedded(t)
	c, put, _ := secretCerts(t, store.New(e.Client, ""))
	want := put().Leaf.SerialNumber.String()
	c.serial(t, "a.shop.example.com")
	e.Close()
	c.age()
	start := time.Now()
	if got := c.serial(t, "a.shop.example.com"); got != want {
		t.Fatalf("serial %s during the outage, want %s", got, want)
	}
	t.Logf("the handshake that read etcd waited %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	for range 10 {
		c.serial(t, "b.shop.example.com")
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("ten handshakes after the first took %v: each waited for etcd", d)
	}
}
