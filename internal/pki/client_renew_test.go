package pki

import (
	"sync/atomic"
	"testing"
	"time"
)

// The client certificate the API server presents to agents (logs, exec)
// was issued once at start, for ServerValidity: a server that ran longer
// reached no agent any more. It is issued again as it nears its end.
func TestServerClientCertIsRenewed(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	ca, err := loadOrCreateCA(t.TempDir(), now)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := ca.NewServerClientCert()
	if err != nil {
		t.Fatal(err)
	}
	first, err := cc.GetClientCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := cc.GetClientCertificate(nil)
	if again.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) != 0 {
		t.Error("a new certificate long before the old one nears its end")
	}
	clock.Store(first.Leaf.NotAfter.Add(-time.Hour).UnixNano())
	renewed, err := cc.GetClientCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !renewed.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Errorf("an hour before its end the certificate is still the one ending %s", first.Leaf.NotAfter)
	}
	if renewed.Leaf.Subject.CommonName != ServerCommonName {
		t.Errorf("the renewed certificate names %q, want %q", renewed.Leaf.Subject.CommonName, ServerCommonName)
	}
}
