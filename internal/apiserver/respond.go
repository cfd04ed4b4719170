package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// writeJSON writes v with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.Encode(v)
}

// writeError maps err to its HTTP status (the one place this mapping
// happens) and writes a v1.Status body.
func writeError(w http.ResponseWriter, err error) {
	var se *v1.StatusError
	if errors.As(err, &se) {
		writeJSON(w, se.Status.Code, se.Status)
		return
	}
	code, reason := v1.StatusFor(err)
	st := v1.Status{Code: code, Reason: reason, Message: err.Error()}
	var fe v1.FieldErrors
	if errors.As(err, &fe) {
		st.Message = fmt.Sprintf("%d invalid field(s)", len(fe))
		st.Details = fe
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gantry"`)
	}
	if code == http.StatusTooManyRequests && w.Header().Get("Retry-After") == "" {
		// The failure budget refills at several a second.
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, code, st)
}

// decodeBody reads a JSON (or YAML) request body into v, enforcing the
// size limit and refusing unknown fields.
// bodyTimeout is how long a request body may take to arrive (a variable
// for tests).
var bodyTimeout = 30 * time.Second

func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	ct := r.Header.Get("Content-Type")
	isYAML := false
	if ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil {
			return fmt.Errorf("%w: Content-Type %q is malformed", v1.ErrUnsupported, ct)
		}
		switch mt {
		case "application/json":
		case "application/yaml", "application/x-yaml", "text/yaml":
			isYAML = true
		default:
			return fmt.Errorf("%w: Content-Type %s is not supported; send application/json or application/yaml", v1.ErrUnsupported, mt)
		}
	}
	// A body that stops coming must not hold a connection for ever (the
	// join needs no credential); the server has no ReadTimeout, which
	// would cut long watches.
	rc := http.NewResponseController(w)
	deadline := rc.SetReadDeadline(time.Now().Add(bodyTimeout)) == nil
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The rest of the body is not waited for (net/http would try
		// to read it before answering): the connection goes.
		w.Header().Set("Connection", "close")
		return &v1.StatusError{Status: v1.Status{Code: http.StatusRequestTimeout, Reason: "RequestTimeout",
			Message: fmt.Sprintf("the request body did not arrive within %s", bodyTimeout)}}
	}
	if deadline {
		rc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: request body is larger than %d bytes", v1.ErrTooLarge, limit)
		}
		return fmt.Errorf("%w: read body: %v", v1.ErrInvalid, err)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return fmt.Errorf("%w: request body is empty", v1.ErrInvalid)
	}
	if isYAML {
		body, err = v1.YAMLToJSON(body)
		if errors.Is(err, v1.ErrMultipleDocuments) {
			return fmt.Errorf("%w: the body is %v", v1.ErrInvalid, err)
		}
		if err != nil {
			return fmt.Errorf("%w: body is not valid YAML: %v", v1.ErrInvalid, err)
		}
	}
	// As strict as manifests: unknown or wrongly cased fields, keys
	// given twice and wrong types are field errors with their paths.
	if err := v1.UnmarshalStrict(body, v); err != nil {
		var fe v1.FieldErrors
		if errors.As(err, &fe) {
			return fe
		}
		return fmt.Errorf("%w: body: %v", v1.ErrInvalid, strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}
