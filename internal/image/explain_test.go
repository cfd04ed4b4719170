package image

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// A registry's refusal reads as its message says it, without the Go
// rendering of the error's detail, and stays a transport.Error beneath.
func TestExplainKeepsTheRegistrysMessage(t *testing.T) {
	terr := &transport.Error{StatusCode: http.StatusConflict, Errors: []transport.Diagnostic{{
		Code: transport.DeniedErrorCode, Message: "default/app:v2 cannot be deleted: app default/app runs it",
		Detail: map[string]string{"repository": "default/app", "reference": "v2"}}}}
	err := explain(terr)
	if got := err.Error(); got != "default/app:v2 cannot be deleted: app default/app runs it" {
		t.Errorf("explain = %q", got)
	}
	var back *transport.Error
	if !errors.As(err, &back) || back.StatusCode != http.StatusConflict {
		t.Error("the transport.Error is lost")
	}
	if got := explain(&transport.Error{StatusCode: http.StatusNotFound, Errors: []transport.Diagnostic{{Code: transport.ManifestUnknownErrorCode}}}).Error(); got != "MANIFEST_UNKNOWN" {
		t.Errorf("a code without a message: %q, want the code", got)
	}
	unauth := explain(&transport.Error{StatusCode: http.StatusUnauthorized, Errors: []transport.Diagnostic{{Code: transport.UnauthorizedErrorCode, Message: "authentication required"}}})
	if got := unauth.Error(); !strings.HasPrefix(got, "authentication required (log in again") || strings.Contains(got, "map[") {
		t.Errorf("explain(401) = %q", got)
	}
}
