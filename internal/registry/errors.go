package registry

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Error codes of the OCI distribution specification that Gantry's own
// front end emits. The engine emits the others itself.
const (
	codeUnauthorized      = "UNAUTHORIZED"
	codeDenied            = "DENIED"
	codeNameInvalid       = "NAME_INVALID"
	codeDigestInvalid     = "DIGEST_INVALID"
	codeTagInvalid        = "TAG_INVALID"
	codeManifestInvalid   = "MANIFEST_INVALID"
	codeBlobUploadInvalid = "BLOB_UPLOAD_INVALID"
	codeUnsupported       = "UNSUPPORTED"
	codeUnavailable       = "UNAVAILABLE"
	codeTooManyRequests   = "TOOMANYREQUESTS"
	// codeRangeInvalid is not in the OCI specification: it is the
	// engine's answer to a chunk out of order, which the front end gives
	// too.
	codeRangeInvalid = "RANGE_INVALID"
)

type specError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// writeError answers with the JSON error body the distribution spec
// defines: {"errors":[{"code","message","detail"}]}.
func writeError(w http.ResponseWriter, status int, code, message string, detail any) {
	body, _ := json.Marshal(struct {
		Errors []specError `json:"errors"`
	}{[]specError{{Code: code, Message: message, Detail: detail}}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
