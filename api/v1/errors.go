package v1

import (
	"errors"
	"fmt"
	"net/http"
)

// Error kinds. Every error Gantry returns across a package boundary wraps
// one of these, and the API server maps them to HTTP status codes in one
// place; the client maps the codes back, so errors.Is works on both sides
// of the wire.
var (
	ErrNotFound      = errors.New("not found")
	ErrAlreadyExists = errors.New("already exists")
	ErrConflict      = errors.New("conflict")
	ErrInvalid       = errors.New("invalid")
	// ErrUnprocessable is a well-formed request that cannot be carried
	// out as asked: changing an immutable object, rolling back to a
	// revision that does not exist.
	ErrUnprocessable  = errors.New("unprocessable")
	ErrUnauthorized   = errors.New("unauthorized")
	ErrForbidden      = errors.New("forbidden")
	ErrTooLarge       = errors.New("too large")
	ErrUnsupported    = errors.New("unsupported")
	ErrResyncRequired = errors.New("resync required")
	ErrUnavailable    = errors.New("unavailable")
	ErrTooManyRequest = errors.New("too many requests")
	ErrQuotaExceeded  = errors.New("quota exceeded")
	// ErrNodeSuperseded is the ErrUnauthorized of a node certificate
	// from before another machine joined under the node's name: the
	// agent that holds it no longer holds the name.
	ErrNodeSuperseded = fmt.Errorf("%w: node superseded", ErrUnauthorized)
)

// Status is the JSON body of every API error.
type Status struct {
	Code    int          `json:"code"`
	Reason  string       `json:"reason"`
	Message string       `json:"message"`
	Details []FieldError `json:"details,omitempty"`
}

// StatusError carries a Status as a Go error.
type StatusError struct{ Status Status }

func (e *StatusError) Error() string {
	msg := e.Status.Message
	for _, d := range e.Status.Details {
		msg += "\n  " + d.String()
	}
	return msg
}

// Is lets errors.Is match a StatusError against the error kinds (and the
// kinds a kind wraps: a NodeSuperseded is Unauthorized too).
func (e *StatusError) Is(target error) bool {
	k := kindForCode(e.Status.Code, e.Status.Reason)
	return k != nil && errors.Is(k, target)
}

var codes = []struct {
	err    error
	code   int
	reason string
}{
	{ErrNotFound, http.StatusNotFound, "NotFound"},
	{ErrAlreadyExists, http.StatusConflict, "AlreadyExists"},
	{ErrConflict, http.StatusConflict, "Conflict"},
	{ErrInvalid, http.StatusBadRequest, "Invalid"},
	{ErrUnprocessable, http.StatusUnprocessableEntity, "Unprocessable"},
	{ErrNodeSuperseded, http.StatusUnauthorized, "NodeSuperseded"}, // before ErrUnauthorized, which it wraps
	{ErrUnauthorized, http.StatusUnauthorized, "Unauthorized"},
	{ErrForbidden, http.StatusForbidden, "Forbidden"},
	{ErrQuotaExceeded, http.StatusForbidden, "QuotaExceeded"},
	{ErrTooLarge, http.StatusRequestEntityTooLarge, "TooLarge"},
	{ErrUnsupported, http.StatusUnsupportedMediaType, "UnsupportedMediaType"},
	{ErrResyncRequired, http.StatusGone, "ResyncRequired"},
	{ErrUnavailable, http.StatusServiceUnavailable, "Unavailable"},
	{ErrTooManyRequest, http.StatusTooManyRequests, "TooManyRequests"},
}

// StatusFor maps an error to its HTTP status code and reason. Errors of no
// known kind are internal errors.
func StatusFor(err error) (int, string) {
	var fe FieldErrors
	if errors.As(err, &fe) {
		return http.StatusBadRequest, "Invalid"
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code, c.reason
		}
	}
	return http.StatusInternalServerError, "InternalError"
}

func kindForCode(code int, reason string) error {
	for _, c := range codes {
		if c.reason == reason {
			return c.err
		}
	}
	// By code alone (an answer without a Gantry body: a proxy's), the
	// general kind of the code: never NodeSuperseded, which only its
	// reason says.
	for _, c := range codes {
		if c.code == code && c.err != ErrNodeSuperseded {
			return c.err
		}
	}
	return nil
}
