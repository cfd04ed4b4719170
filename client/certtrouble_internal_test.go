package client

import (
	"crypto/x509"
	"fmt"
	"testing"
)

// A certificate expired (or not yet valid) by this machine's clock is
// retried like a server that is away: a board that boots before its clock
// is set must not give up. A certificate of an unknown CA is not.
func TestCertificateTroubleLeavesTheLocalClockToRetries(t *testing.T) {
	expired := fmt.Errorf("post: %w", x509.CertificateInvalidError{Reason: x509.Expired})
	if msg := certificateTrouble(expired); msg != "" {
		t.Errorf("an expired certificate is a lasting error (%q); want it retried", msg)
	}
	if msg := certificateTrouble(fmt.Errorf("post: %w", x509.UnknownAuthorityError{})); msg == "" {
		t.Error("a certificate of an unknown CA is retried; want a lasting error")
	}
}
