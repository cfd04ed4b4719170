package audit

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// vectorEntries are two records whose hashes were computed by an
// independent implementation of the encoding in doc.go (a dozen lines of
// Python with hashlib), so the documentation is known to be enough to
// re-implement verification.
func vectorEntries() []Entry {
	return []Entry{{
		Seq: 1, Time: time.Unix(1767225600, 123456789).UTC(), RequestID: "req-1", User: "alice", Source: "10.0.0.7",
		Method: "PUT", Path: "/api/v1/namespaces/team-a/apps/web", Verb: "update", Resource: "apps",
		Namespace: "team-a", Name: "web", Status: 200, Duration: 1500 * time.Microsecond,
	}, {
		Seq: 2, Time: time.Unix(1767225601, 0).UTC(), RequestID: "req-2", User: "bob", Source: "10.0.0.8",
		Method: "DELETE", Path: "/api/v1/namespaces/team-a/secrets/db", Verb: "delete", Resource: "secrets",
		Namespace: "team-a", Name: "db", Status: 403, Duration: 250 * time.Microsecond, Reason: "denied",
	}}
}

const (
	vectorCanonical1 = "15:gantry-audit-v1,1:1,0:,19:1767225600123456789,5:req-1,5:alice,8:10.0.0.7,3:PUT,34:/api/v1/namespaces/team-a/apps/web,6:update,4:apps,0:,6:team-a,3:web,3:200,7:1500000,0:,"
	vectorHash1      = "e716b412af94c454ea048c4e27bfbaa56402a9ba356df63685d5da87a099a9cd"
	vectorHash2      = "33737ec5a716488a1cb2afea526ebbf8edcf6d78cf1c871938fc2e63f844329a"
)

func TestCanonicalEncodingMatchesTheDocumentedVector(t *testing.T) {
	es := vectorEntries()
	if got := string(es[0].Canonical()); got != vectorCanonical1 {
		t.Fatalf("canonical bytes:\n got %s\nwant %s", got, vectorCanonical1)
	}
	es[0].Hash = es[0].ComputeHash()
	if es[0].Hash != vectorHash1 {
		t.Fatalf("hash of record 1 = %s, want %s", es[0].Hash, vectorHash1)
	}
	es[1].Prev = es[0].Hash
	es[1].Hash = es[1].ComputeHash()
	if es[1].Hash != vectorHash2 {
		t.Fatalf("hash of record 2 = %s, want %s", es[1].Hash, vectorHash2)
	}

	// The JSON-lines form is a golden file: it is the format SIEMs parse.
	var buf bytes.Buffer
	for i := range es {
		line, err := es[i].Encode()
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	golden := filepath.Join("testdata", "vector.jsonl")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("JSON lines differ from %s:\n got %s\nwant %s", golden, buf.Bytes(), want)
	}
	res, err := VerifyFile(golden)
	if err != nil || !res.Valid || res.Checked != 2 || res.LastHash != vectorHash2 {
		t.Fatalf("VerifyFile(%s) = %+v, %v; want a valid chain of 2 ending in %s", golden, res, err, vectorHash2)
	}
}

// TestRecordKeysAreOnlyTheDocumentedOnes guards the promise that no
// body, header or query string can reach the trail: a new field must be
// added here on purpose.
func TestRecordKeysAreOnlyTheDocumentedOnes(t *testing.T) {
	e := vectorEntries()[1]
	e.Sub, e.Prev, e.Hash = "reveal", strings.Repeat("0", 64), strings.Repeat("1", 64)
	line, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"durationNs", "hash", "method", "name", "namespace", "path", "prev", "reason", "requestID",
		"resource", "seq", "source", "status", "sub", "time", "user", "verb"}
	if !slices.Equal(keys, want) {
		t.Fatalf("record keys = %v, want exactly %v", keys, want)
	}
}

func TestNormalizedRecordsReadBackWithTheSameHash(t *testing.T) {
	cases := []struct {
		name string
		edit func(e *Entry)
	}{
		{"invalid UTF-8 in a path becomes replacement characters", func(e *Entry) { e.Path = "/api/v1/\xff\xfe/x\xc3" }},
		{"a very long path is cut at a character boundary", func(e *Entry) { e.Path = "/" + strings.Repeat("é", 5000) }},
		{"HTML characters and line separators survive escaping", func(e *Entry) { e.User = "<a&b>\u2028\n\"" }},
		{"a time in a non-UTC zone is stored in UTC", func(e *Entry) { e.Time = time.Date(2026, 3, 1, 12, 0, 0, 1, time.FixedZone("X", 3600)) }},
		{"an empty entry still has a valid record", func(e *Entry) { *e = Entry{Time: time.Unix(0, 0)} }},
		{"a time JSON cannot carry is replaced by now", func(e *Entry) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := vectorEntries()[0]
			tc.edit(&e)
			recs, err := chain(chainHead{seq: 41, hash: vectorHash1}, []Entry{e})
			if err != nil {
				t.Fatal(err)
			}
			got, err := CheckRecord(recs[0].line)
			if err != nil {
				t.Fatalf("CheckRecord(%s): %v", recs[0].line, err)
			}
			if got.Seq != 42 || got.Prev != vectorHash1 || got.Hash != recs[0].hash {
				t.Fatalf("read back seq %d prev %s hash %s; want 42, %s, %s", got.Seq, got.Prev, got.Hash, vectorHash1, recs[0].hash)
			}
			if len(got.Path) > maxPathBytes || !utf8.ValidString(got.Path) {
				t.Fatalf("path not normalized: %d bytes, valid UTF-8 %v", len(got.Path), utf8.ValidString(got.Path))
			}
		})
	}
}

func TestCheckRecordRejects(t *testing.T) {
	e := vectorEntries()[0]
	e.Hash = e.ComputeHash()
	good, _ := e.Encode()
	cases := []struct {
		name, line, want string
	}{
		{"a record with an unknown field", strings.Replace(string(good), `"user"`, `"body":"x","user"`, 1), "unknown field"},
		{"a record with data after it", string(good) + " {}", "after the JSON object"},
		{"a record whose key changed letter case", strings.Replace(string(good), `"user"`, `"User"`, 1), "canonical JSON"},
		{"a record with a changed user", strings.Replace(string(good), "alice", "alicf", 1), "hash mismatch"},
		{"a record without a seq", strings.Replace(string(good), `"seq":1,`, ``, 1), "no seq"},
		{"not JSON", "hello", "not an audit record"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CheckRecord([]byte(tc.line))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CheckRecord = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := CheckRecord(append(good, '\n')); err != nil {
		t.Fatalf("the good record with its newline: %v", err)
	}
}

// FuzzParseRecord feeds arbitrary lines to the record parser and checker:
// they must not panic, and a line that passes CheckRecord must be exactly
// the encoding of what was parsed.
func FuzzParseRecord(f *testing.F) {
	for _, e := range vectorEntries() {
		e.Hash = e.ComputeHash()
		line, _ := e.Encode()
		f.Add(line)
	}
	f.Add([]byte(`{"seq":1}`))
	f.Add([]byte(`{"seq":18446744073709551615,"time":"0001-01-01T00:00:00Z","user":"","status":0,"durationNs":0,"prev":"","hash":""}`))
	f.Add([]byte("{\"user\":\"\xff\"}\n"))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := CheckRecord(line)
		if err != nil {
			return
		}
		again, err := e.Encode()
		if err != nil {
			t.Fatalf("a checked record does not encode: %v", err)
		}
		if !bytes.Equal(again, bytes.TrimSuffix(line, []byte("\n"))) {
			t.Fatalf("checked record %q re-encodes as %q", line, again)
		}
		if e.ComputeHash() != e.Hash {
			t.Fatal("checked record has a wrong hash")
		}
	})
}

// FuzzChainedRecordsVerify chains entries built from arbitrary strings:
// whatever a client puts in a path or a user name, the record read back
// must verify.
func FuzzChainedRecordsVerify(f *testing.F) {
	f.Add("alice", "/api/v1/apps", "denied", int64(1767225600123456789), int64(1500))
	f.Add("\xff\xfe", strings.Repeat("\u2028", 3), "<&>", int64(-1), int64(-5))
	f.Fuzz(func(t *testing.T, user, path, reason string, unixNano, dur int64) {
		e := Entry{User: user, Path: path, Reason: reason, Time: time.Unix(0, unixNano), Duration: time.Duration(dur), Status: 200}
		recs, err := chain(chainHead{seq: 7, hash: vectorHash2}, []Entry{e, e})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		for _, r := range recs {
			buf.Write(r.line)
			buf.WriteByte('\n')
		}
		var c checker
		c.anchorAt(chainHead{seq: 7, hash: vectorHash2})
		if err := verifyReader(&c, &buf, "fuzz"); err != nil {
			t.Fatal(err)
		}
		if res := c.result(); !res.Valid || res.Checked != 2 {
			t.Fatalf("chained records do not verify: %+v", res)
		}
	})
}
