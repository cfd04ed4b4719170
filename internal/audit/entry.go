package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// Entry is one audit record: what is known about a finished API or
// registry request, and its place in the hash chain.
//
// The request fields have the same names and types as
// apiserver.AuditEntry so that one converts to the other field by field.
// The JSON names below are the JSON-lines format; doc.go describes the
// canonical encoding the hash is computed over.
type Entry struct {
	// Seq is the record's position in the chain: 1, 2, 3, … with no gaps.
	// Record ignores a Seq set by the caller.
	Seq uint64 `json:"seq"`
	// Time is when the request started (UTC).
	Time      time.Time `json:"time"`
	RequestID string    `json:"requestID,omitempty"`
	// User is the authenticated user, or the anonymous user's name.
	User string `json:"user"`
	// Source is the client's address.
	Source string `json:"source,omitempty"`
	Method string `json:"method,omitempty"`
	// Path is the URL path only: never the query string, headers or body.
	Path      string `json:"path,omitempty"`
	Verb      string `json:"verb,omitempty"`
	Resource  string `json:"resource,omitempty"`
	Sub       string `json:"sub,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	// Status is the HTTP status code of the response.
	Status   int           `json:"status"`
	Duration time.Duration `json:"durationNs"`
	// Reason says why a request was refused ("denied",
	// "authentication failed"), or "dry run" for a write that stored
	// nothing (?dryRun=true); empty otherwise.
	Reason string `json:"reason,omitempty"`
	// Prev is the Hash of record Seq-1 (empty for the very first record).
	Prev string `json:"prev"`
	// Hash is the lowercase hex SHA-256 of the record's canonical encoding.
	Hash string `json:"hash"`
}

// End is when the request finished, which is close to when it was
// recorded: records are appended in the order of their End, give or take
// the clock skew between servers.
func (e *Entry) End() time.Time { return e.Time.Add(e.Duration) }

// canonicalVersion is the first field of the canonical encoding; a new
// encoding gets a new version so old records still verify.
const canonicalVersion = "gantry-audit-v1"

// Canonical returns the bytes the record's hash is computed over; doc.go
// specifies them. Hash is not part of them; Prev is.
func (e *Entry) Canonical() []byte {
	b := make([]byte, 0, 256+len(e.Path))
	str := func(s string) {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
		b = append(b, ',')
	}
	num := func(n int64) { str(strconv.FormatInt(n, 10)) }
	str(canonicalVersion)
	str(strconv.FormatUint(e.Seq, 10))
	str(e.Prev)
	num(e.Time.UnixNano())
	str(e.RequestID)
	str(e.User)
	str(e.Source)
	str(e.Method)
	str(e.Path)
	str(e.Verb)
	str(e.Resource)
	str(e.Sub)
	str(e.Namespace)
	str(e.Name)
	num(int64(e.Status))
	num(int64(e.Duration))
	str(e.Reason)
	return b
}

// ComputeHash returns the hash the record should carry.
func (e *Entry) ComputeHash() string {
	sum := sha256.Sum256(e.Canonical())
	return hex.EncodeToString(sum[:])
}

// Field length limits. They keep one record well under etcd's request
// size limit however long a path a client sends; what is cut is the tail.
const (
	maxPathBytes  = 4096
	maxFieldBytes = 1024
)

// normalize makes e exactly representable in JSON, so that the hash of a
// record read back from a file or the store equals the hash it was
// written with: UTC time, valid UTF-8 (each invalid byte becomes U+FFFD,
// as encoding/json would do on its own) and bounded field lengths.
func (e *Entry) normalize() {
	e.Time = e.Time.UTC()
	if y := e.Time.Year(); y < 1 || y > 9999 {
		// JSON (RFC 3339) cannot carry it; no real request has it.
		e.Time = time.Now().UTC()
	}
	for _, f := range []*string{&e.RequestID, &e.User, &e.Source, &e.Method, &e.Verb,
		&e.Resource, &e.Sub, &e.Namespace, &e.Name, &e.Reason} {
		*f = cleanString(*f, maxFieldBytes)
	}
	e.Path = cleanString(e.Path, maxPathBytes)
}

func cleanString(s string, max int) string {
	if !utf8.ValidString(s) {
		var b []byte
		for i := 0; i < len(s); {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				b = utf8.AppendRune(b, utf8.RuneError)
			} else {
				b = append(b, s[i:i+n]...)
			}
			i += n
		}
		s = string(b)
	}
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// Encode returns the record's JSON line, without the trailing newline.
// The same bytes are stored in etcd and written to the file.
func (e *Entry) Encode() ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode audit record %d: %w", e.Seq, err)
	}
	return b, nil
}

// ParseRecord decodes one JSON-lines record (a trailing newline is
// allowed). It rejects unknown fields and trailing data but does not check
// the hash: that is CheckRecord.
func ParseRecord(line []byte) (Entry, error) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Entry{}, fmt.Errorf("not an audit record: %w", err)
	}
	if dec.More() || dec.InputOffset() != int64(len(line)) {
		return Entry{}, errors.New("not an audit record: data after the JSON object")
	}
	return e, nil
}

// CheckRecord parses a record and checks it on its own: the bytes must be
// exactly Gantry's encoding of the record (so an edit that keeps the
// meaning, such as the letter case of a key, is still caught) and the
// hash must match the content. Links to neighbours are the caller's job.
// On a hash or encoding mismatch the parsed entry is returned with the
// error.
func CheckRecord(line []byte) (Entry, error) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	e, err := ParseRecord(line)
	if err != nil {
		return Entry{}, err
	}
	if e.Seq == 0 {
		return e, errors.New("record has no seq")
	}
	if want := e.ComputeHash(); e.Hash != want {
		return e, fmt.Errorf("hash mismatch: the record says %s but its content hashes to %s", short(e.Hash), short(want))
	}
	again, err := e.Encode()
	if err != nil {
		return e, err
	}
	if !bytes.Equal(again, line) {
		return e, errors.New("record bytes differ from its canonical JSON encoding (edited in place)")
	}
	return e, nil
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	if h == "" {
		return `""`
	}
	return h
}
