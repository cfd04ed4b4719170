package audit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// sharedStore starts one embedded etcd for a test; subtests get their own
// key prefix on it (Config.Prefix), which keeps them apart at a fraction
// of the cost of an etcd each.
func sharedStore(t *testing.T) *store.Store {
	t.Helper()
	return storetest.New(t)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// prefixFor gives each (sub)test its own audit keys.
func prefixFor(t *testing.T) string {
	return "/audit-test/" + strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + "/"
}

// openLog opens a log and closes it when the test ends.
func openLog(t *testing.T, cfg Config) *Log {
	t.Helper()
	if cfg.Prefix == "" {
		cfg.Prefix = prefixFor(t)
	}
	l, err := New(t.Context(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("open audit log: %v", err)
	}
	t.Cleanup(func() { closeLog(t, l) })
	return l
}

func closeLog(t *testing.T, l *Log) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Errorf("close audit log: %v", err)
	}
}

// request returns the entry the API server would record for request i.
func request(i int) Entry {
	return Entry{
		Time: time.Now().UTC(), RequestID: fmt.Sprintf("r%d", i), User: "alice", Source: "10.1.2.3",
		Method: "GET", Path: "/api/v1/namespaces/default/apps/web", Verb: "get", Resource: "apps",
		Namespace: "default", Name: "web", Status: 200, Duration: time.Millisecond,
	}
}

// recordAll records entries and waits until they are stored.
func recordAll(t *testing.T, l *Log, es ...Entry) {
	t.Helper()
	for _, e := range es {
		l.Record(t.Context(), e)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func requests(from, n int) []Entry {
	out := make([]Entry, n)
	for i := range out {
		out[i] = request(from + i)
	}
	return out
}

func mustVerify(t *testing.T, l *Log, checked int) VerifyResult {
	t.Helper()
	res, err := l.Verify(t.Context())
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !res.Valid || res.Checked != checked {
		t.Fatalf("verify = %+v, want a valid chain of %d records", res, checked)
	}
	return res
}

func mustVerifyDir(t *testing.T, dir string, lastSeq uint64) VerifyResult {
	t.Helper()
	res, err := VerifyDir(dir)
	if err != nil {
		t.Fatalf("verify %s: %v", dir, err)
	}
	if !res.Valid || res.LastSeq != lastSeq {
		t.Fatalf("verify %s = %+v, want a valid chain ending at %d", dir, res, lastSeq)
	}
	return res
}

func TestChainContinuesAcrossRestarts(t *testing.T) {
	etcdDir, fileDir := t.TempDir(), t.TempDir()
	e1 := storetest.EmbeddedIn(t, etcdDir)
	cfg := Config{Store: store.New(e1.Client, ""), Dir: fileDir, Prefix: prefixFor(t)}
	l1, err := New(t.Context(), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range requests(0, 7) {
		l1.Record(t.Context(), e)
	}
	// Close alone must write what is queued: no Flush first.
	closeLog(t, l1)
	e1.Close()

	e2 := storetest.EmbeddedIn(t, etcdDir)
	cfg.Store = store.New(e2.Client, "")
	l2 := openLog(t, cfg)
	recordAll(t, l2, requests(7, 5)...)

	res := mustVerify(t, l2, 12)
	if res.FirstSeq != 1 || res.LastSeq != 12 {
		t.Fatalf("chain spans %d..%d, want 1..12", res.FirstSeq, res.LastSeq)
	}
	mustVerifyDir(t, fileDir, 12)
	got, err := l2.Query(t.Context(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range got {
		if e.RequestID != fmt.Sprintf("r%d", i) || e.Seq != uint64(i+1) {
			t.Fatalf("record %d is %s with seq %d; want r%d with seq %d (order across restart)", i, e.RequestID, e.Seq, i, i+1)
		}
	}
	if st := l2.Stats(); st.LastSeq != 12 || st.Persisted != 5 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestConcurrentRecordsFormOneChain(t *testing.T) {
	st := sharedStore(t)
	l := openLog(t, Config{Store: st, Dir: t.TempDir()})
	const writers, each = 8, 250
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				l.Record(t.Context(), request(w*each+i))
			}
		})
	}
	wg.Wait()
	recordAll(t, l)
	mustVerify(t, l, writers*each)
	mustVerifyDir(t, l.cfg.Dir, writers*each)
	got, err := l.Query(t.Context(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range got {
		if seen[e.RequestID] {
			t.Fatalf("request %s recorded twice", e.RequestID)
		}
		seen[e.RequestID] = true
	}
	if len(seen) != writers*each {
		t.Fatalf("%d distinct requests recorded, want %d", len(seen), writers*each)
	}
}

// TestTwoServersShareOneChain runs two logs on one store, as two API
// servers of a cluster do: their records interleave in one chain, and
// each server's file is still an unbroken chain.
func TestTwoServersShareOneChain(t *testing.T) {
	st := sharedStore(t)
	prefix := prefixFor(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	a := openLog(t, Config{Store: st, Prefix: prefix, Dir: dirA})
	b := openLog(t, Config{Store: st, Prefix: prefix, Dir: dirB})
	// b read the end of the chain before a wrote, so b's first batch
	// loses the race for seq 1, and a's next one for seq 6.
	recordAll(t, a, requests(0, 5)...)
	recordAll(t, b, requests(0, 5)...)
	recordAll(t, a, requests(5, 5)...)
	if ra, rb := a.Stats().Races, b.Stats().Races; ra == 0 || rb == 0 {
		t.Fatalf("races a=%d b=%d: each should have lost one", ra, rb)
	}
	var wg sync.WaitGroup
	for _, l := range []*Log{a, b} {
		wg.Go(func() {
			for i := range 300 {
				l.Record(context.Background(), request(i))
				if i%50 == 0 {
					l.Flush(context.Background())
				}
			}
		})
	}
	wg.Wait()
	recordAll(t, a)
	recordAll(t, b)
	mustVerify(t, a, 615)
	// a's file started at 1 and copied b's records in; b's started at 6.
	for dir, first := range map[string]uint64{dirA: 1, dirB: 6} {
		res, err := VerifyDir(dir)
		if err != nil || !res.Valid || res.FirstSeq != first {
			t.Fatalf("file chain in %s: %+v, %v; want a valid chain from %d", dir, res, err, first)
		}
	}
}

// flipVariants returns other values for a byte: every bit position once
// would be too slow against etcd, so one nearby value and, for letters,
// the other case.
func flipVariants(b byte) []byte {
	out := []byte{b ^ 0x01}
	if (b|0x20) >= 'a' && (b|0x20) <= 'z' {
		out = append(out, b^0x20)
	}
	return slices.DeleteFunc(out, func(c byte) bool { return c == '\n' })
}

// TestEditingOneByteInEtcdBreaksVerifyAtThatRecord is the must-show of
// issue 6 for the store: every single-byte edit of a stored record makes
// Verify fail, naming that record.
func TestEditingOneByteInEtcdBreaksVerifyAtThatRecord(t *testing.T) {
	st := sharedStore(t)
	l := openLog(t, Config{Store: st})
	recordAll(t, l, requests(0, 10)...)
	mustVerify(t, l, 10)

	cli := st.Client()
	key := l.st.key(5)
	resp, err := cli.Get(t.Context(), key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("read record 5: %v", err)
	}
	orig := resp.Kvs[0].Value
	edits := 0
	for i := range orig {
		for _, nb := range flipVariants(orig[i]) {
			mod := bytes.Clone(orig)
			mod[i] = nb
			if _, err := cli.Put(t.Context(), key, string(mod)); err != nil {
				t.Fatal(err)
			}
			res, err := l.Verify(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if res.Valid || res.BrokenSeq != 5 {
				t.Fatalf("after changing byte %d of record 5 from %q to %q (%s): verify = %+v; want a break at record 5",
					i, orig[i], nb, mod, res)
			}
			edits++
		}
	}
	if _, err := cli.Put(t.Context(), key, string(orig)); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, l, 10)
	t.Logf("%d single-byte edits of a %d-byte record, each caught at record 5", edits, len(orig))

	t.Run("the user name edited in etcd is reported with the record as read", func(t *testing.T) {
		mod := bytes.Replace(orig, []byte(`"user":"alice"`), []byte(`"user":"mallory"`), 1)
		if _, err := cli.Put(t.Context(), key, string(mod)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Put(context.Background(), key, string(orig)) })
		res, err := l.Verify(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if res.Valid || res.BrokenSeq != 5 || res.FirstBroken == nil || res.FirstBroken.User != "mallory" || !strings.Contains(res.Reason, "hash mismatch") {
			t.Fatalf("verify = %+v", res)
		}
	})
	t.Run("a deleted record is reported at the record after the gap", func(t *testing.T) {
		if _, err := cli.Delete(t.Context(), key); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Put(context.Background(), key, string(orig)) })
		res, err := l.Verify(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if res.Valid || res.BrokenSeq != 6 || !strings.Contains(res.Reason, "records 5 to 5 are missing") {
			t.Fatalf("verify = %+v", res)
		}
	})
	t.Run("deleting the oldest record without an anchor is caught", func(t *testing.T) {
		k1 := l.st.key(1)
		r1, _ := cli.Get(t.Context(), k1)
		if _, err := cli.Delete(t.Context(), k1); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Put(context.Background(), k1, string(r1.Kvs[0].Value)) })
		res, err := l.Verify(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if res.Valid || res.BrokenSeq != 2 {
			t.Fatalf("verify = %+v", res)
		}
	})
}

// TestEditingOneByteInTheFileBreaksVerifyFileAtThatRecord is the same
// must-show for the JSON-lines file.
func TestEditingOneByteInTheFileBreaksVerifyFileAtThatRecord(t *testing.T) {
	st := sharedStore(t)
	dir := t.TempDir()
	l := openLog(t, Config{Store: st, Dir: dir})
	recordAll(t, l, requests(0, 10)...)
	closeLog(t, l)
	path := filepath.Join(dir, ActiveFile)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := VerifyFile(path); err != nil || !res.Valid || res.Checked != 10 {
		t.Fatalf("untouched file: %+v, %v", res, err)
	}
	lines := bytes.SplitAfter(orig, []byte("\n"))
	start := len(bytes.Join(lines[:4], nil))
	end := start + len(lines[4]) - 1 // the newline is not part of the record
	tampered := filepath.Join(t.TempDir(), "tampered.jsonl")
	edits := 0
	for i := start; i < end; i++ {
		for _, nb := range flipVariants(orig[i]) {
			mod := bytes.Clone(orig)
			mod[i] = nb
			if err := os.WriteFile(tampered, mod, 0o600); err != nil {
				t.Fatal(err)
			}
			res, err := VerifyFile(tampered)
			if err != nil {
				t.Fatal(err)
			}
			if res.Valid || res.BrokenSeq != 5 || res.Line != 5 || res.File != tampered {
				t.Fatalf("after changing byte %d of line 5 from %q to %q: verify = %+v; want a break at record 5, line 5", i-start, orig[i], nb, res)
			}
			edits++
		}
	}
	t.Logf("%d single-byte edits of line 5, each caught at record 5", edits)

	cases := []struct {
		name     string
		edit     func([][]byte) [][]byte
		seq      uint64
		inReason string
	}{
		{"a removed line", func(ls [][]byte) [][]byte { return slices.Delete(ls, 4, 5) }, 6, "missing"},
		{"two swapped lines", func(ls [][]byte) [][]byte { ls[4], ls[5] = ls[5], ls[4]; return ls }, 6, "missing"},
		{"a repeated line", func(ls [][]byte) [][]byte { return slices.Insert(ls, 5, ls[4]) }, 5, "out of order or repeated"},
		{"a line cut short at the end", func(ls [][]byte) [][]byte { ls[9] = ls[9][:40]; return ls }, 10, "unreadable"},
		{"an extra blank line", func(ls [][]byte) [][]byte { return slices.Insert(ls, 5, []byte("\n")) }, 6, "unreadable"},
	}
	for _, tc := range cases {
		t.Run(tc.name+" is reported", func(t *testing.T) {
			ls := make([][]byte, len(lines))
			for i := range lines {
				ls[i] = bytes.Clone(lines[i])
			}
			if err := os.WriteFile(tampered, bytes.Join(tc.edit(ls), nil), 0o600); err != nil {
				t.Fatal(err)
			}
			res, err := VerifyFile(tampered)
			if err != nil {
				t.Fatal(err)
			}
			if res.Valid || res.BrokenSeq != tc.seq || !strings.Contains(res.Reason, tc.inReason) {
				t.Fatalf("verify = %+v; want a break at %d about %q", res, tc.seq, tc.inReason)
			}
		})
	}
}

func TestQueryFilters(t *testing.T) {
	st := sharedStore(t)
	l := openLog(t, Config{Store: st})
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	var all []Entry
	for i := range 30 {
		e := request(i)
		e.Time = base.Add(time.Duration(i) * time.Minute)
		e.User = []string{"alice", "bob"}[i%2]
		e.Namespace = []string{"team-a", "team-b"}[i%2]
		e.Verb = []string{"get", "update", "delete"}[i%3]
		e.Resource = []string{"apps", "secrets"}[i/15]
		all = append(all, e)
	}
	// A watch that started long ago ends (and is recorded) last.
	watch := request(30)
	watch.Time, watch.Duration, watch.Verb, watch.User = base.Add(-3*time.Hour), 3*time.Hour+30*time.Minute, "watch", "carol"
	all = append(all, watch)
	recordAll(t, l, all...)

	ids := func(keep func(i int, e Entry) bool) []string {
		var out []string
		for i, e := range all {
			if keep(i, e) {
				out = append(out, e.RequestID)
			}
		}
		return out
	}
	cases := []struct {
		name string
		f    Filter
		want []string
	}{
		{"no filter returns everything in order", Filter{}, ids(func(int, Entry) bool { return true })},
		{"a user", Filter{User: "bob"}, ids(func(i int, _ Entry) bool { return i%2 == 1 && i < 30 })},
		{"a namespace and a verb", Filter{Namespace: "team-a", Verb: "delete"}, []string{"r2", "r8", "r14", "r20", "r26"}},
		{"a resource", Filter{Resource: "secrets", Verb: "get"}, []string{"r15", "r18", "r21", "r24", "r27"}},
		{"since is inclusive", Filter{Since: base.Add(25 * time.Minute)}, []string{"r25", "r26", "r27", "r28", "r29"}},
		{"until is exclusive", Filter{Since: base.Add(3 * time.Minute), Until: base.Add(6 * time.Minute)}, []string{"r3", "r4", "r5"}},
		{"since long ago finds the late-recorded watch", Filter{Since: base.Add(-4 * time.Hour), User: "carol"}, []string{"r30"}},
		{"since after the watch started skips it", Filter{Since: base.Add(-2 * time.Hour), User: "carol"}, nil},
		{"limit keeps the newest matches, oldest first", Filter{User: "alice", Limit: 3}, []string{"r24", "r26", "r28"}},
		{"after a seq", Filter{AfterSeq: 28}, []string{"r28", "r29", "r30"}},
		{"nothing matches", Filter{User: "nobody"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := l.Query(t.Context(), tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var gotIDs []string
			for _, e := range got {
				gotIDs = append(gotIDs, e.RequestID)
			}
			if !slices.Equal(gotIDs, tc.want) {
				t.Fatalf("Query(%+v) = %v, want %v", tc.f, gotIDs, tc.want)
			}
			// The query string form selects the same records.
			f2, err := FilterFromQuery(tc.f.Values(), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if !f2.Since.Equal(tc.f.Since) || !f2.Until.Equal(tc.f.Until) {
				t.Fatalf("round trip of times: %+v vs %+v", f2, tc.f)
			}
			f2.Since, f2.Until = tc.f.Since, tc.f.Until
			if f2 != tc.f {
				t.Fatalf("FilterFromQuery(Values()) = %+v, want %+v", f2, tc.f)
			}
		})
	}
}

func TestFilterFromQuery(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		query   string
		want    Filter
		wantErr bool
	}{
		{"since=1h&user=alice&namespace=a&verb=get&resource=apps&limit=5", Filter{Since: now.Add(-time.Hour), User: "alice", Namespace: "a", Verb: "get", Resource: "apps", Limit: 5}, false},
		{"since=2026-04-30T00:00:00Z&until=2026-05-01T00:00:00Z&afterSeq=9", Filter{Since: now.Add(-36 * time.Hour), Until: now.Add(-12 * time.Hour), AfterSeq: 9}, false},
		{"since=yesterday", Filter{}, true},
		{"since=-1h", Filter{}, true},
		{"limit=-1", Filter{}, true},
		{"afterSeq=x", Filter{}, true},
		// until before since matches nothing: a swapped pair is refused,
		// not answered with an empty list.
		{"since=1h&until=2h", Filter{}, true},
		{"since=2026-05-01T00:00:00Z&until=2026-04-30T00:00:00Z", Filter{}, true},
		{"since=2h&until=1h", Filter{Since: now.Add(-2 * time.Hour), Until: now.Add(-time.Hour)}, false},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := FilterFromQuery(q, now)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && (!got.Since.Equal(tc.want.Since) || !got.Until.Equal(tc.want.Until)) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			got.Since, got.Until = tc.want.Since, tc.want.Until
			if err == nil && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestExportWritesTheStoredRecordsAsJSONLines(t *testing.T) {
	st := sharedStore(t)
	l := openLog(t, Config{Store: st})
	es := requests(0, 12)
	for i := range es {
		es[i].User = []string{"alice", "bob", "carol"}[i%3]
	}
	recordAll(t, l, es...)

	var buf bytes.Buffer
	if err := l.Export(t.Context(), &buf, Filter{}); err != nil {
		t.Fatal(err)
	}
	// The full export is itself a verifiable chain, byte for byte what
	// etcd holds.
	path := filepath.Join(t.TempDir(), "export.jsonl")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := VerifyFile(path)
	if err != nil || !res.Valid || res.Checked != 12 {
		t.Fatalf("verify export: %+v, %v", res, err)
	}
	if head := mustVerify(t, l, 12); head.LastHash != res.LastHash {
		t.Fatalf("export ends at %s, store at %s", res.LastHash, head.LastHash)
	}
	resp, err := st.Client().Get(t.Context(), l.st.key(3))
	if err != nil {
		t.Fatal(err)
	}
	if line := bytes.Split(buf.Bytes(), []byte("\n"))[2]; !bytes.Equal(line, resp.Kvs[0].Value) {
		t.Fatalf("exported line 3 %s differs from the stored record %s", line, resp.Kvs[0].Value)
	}

	buf.Reset()
	if err := l.Export(t.Context(), &buf, Filter{User: "bob", Limit: 3}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	var seqs []uint64
	for _, line := range lines {
		e, err := CheckRecord([]byte(line))
		if err != nil {
			t.Fatalf("exported line %s: %v", line, err)
		}
		if e.User != "bob" {
			t.Fatalf("exported a record of %s", e.User)
		}
		seqs = append(seqs, e.Seq)
	}
	if !slices.Equal(seqs, []uint64{5, 8, 11}) {
		t.Fatalf("exported seqs %v, want bob's newest three [5 8 11]", seqs)
	}
}

func TestRetentionPruneKeepsTheChainVerifiable(t *testing.T) {
	st := sharedStore(t)
	cli := st.Client()
	old := func(from, n int) []Entry {
		es := requests(from, n)
		for i := range es {
			es[i].Time = time.Now().Add(-3 * time.Hour)
		}
		return es
	}

	t.Run("records older than retention go and the anchor checks the oldest kept", func(t *testing.T) {
		l := openLog(t, Config{Store: st, Retention: time.Hour, PruneInterval: time.Hour})
		recordAll(t, l, old(0, 20)...)
		recordAll(t, l, requests(20, 10)...)
		n, err := l.Prune(t.Context())
		if err != nil || n != 20 {
			t.Fatalf("prune = %d, %v; want 20 records deleted", n, err)
		}
		if res := mustVerify(t, l, 10); res.FirstSeq != 21 {
			t.Fatalf("oldest kept record is %d, want 21", res.FirstSeq)
		}
		recordAll(t, l, requests(30, 5)...)
		mustVerify(t, l, 15)
		if n, err := l.Prune(t.Context()); err != nil || n != 0 {
			t.Fatalf("second prune = %d, %v; want nothing to do", n, err)
		}

		akey := l.st.anchorKey()
		ar, _ := cli.Get(t.Context(), akey)
		aorig := ar.Kvs[0].Value
		k21 := l.st.key(21)
		r21, _ := cli.Get(t.Context(), k21)

		cli.Put(t.Context(), akey, strings.Replace(string(aorig), `"hash":"`, `"hash":"0`, 1))
		res, _ := l.Verify(t.Context())
		if res.Valid || res.BrokenSeq != 21 || !strings.Contains(res.Reason, "prev") {
			t.Fatalf("with an edited anchor: %+v; want a break at 21", res)
		}
		cli.Put(t.Context(), akey, "{not json")
		res, _ = l.Verify(t.Context())
		if res.Valid || res.BrokenSeq != 21 || !strings.Contains(res.Reason, "anchor is not readable") {
			t.Fatalf("with an unreadable anchor: %+v; want a break at 21", res)
		}
		cli.Delete(t.Context(), akey)
		res, _ = l.Verify(t.Context())
		if res.Valid || res.BrokenSeq != 21 || !strings.Contains(res.Reason, "records 1 to 20 are missing") {
			t.Fatalf("without the anchor: %+v; want a break at 21", res)
		}
		cli.Put(t.Context(), akey, string(aorig))
		cli.Delete(t.Context(), k21)
		res, _ = l.Verify(t.Context())
		if res.Valid || res.BrokenSeq != 22 {
			t.Fatalf("with the oldest kept record deleted: %+v; want a break at 22", res)
		}
		cli.Put(t.Context(), k21, string(r21.Kvs[0].Value))
		mustVerify(t, l, 15)
	})

	t.Run("an empty store verifies and prunes nothing", func(t *testing.T) {
		l := openLog(t, Config{Store: st})
		mustVerify(t, l, 0)
		if n, err := l.Prune(t.Context()); err != nil || n != 0 {
			t.Fatalf("prune = %d, %v", n, err)
		}
	})

	t.Run("beyond max records the oldest go whatever their age", func(t *testing.T) {
		l := openLog(t, Config{Store: st, MaxRecords: 7, PruneInterval: time.Hour})
		recordAll(t, l, requests(0, 2500)...)
		n, err := l.Prune(t.Context())
		if err != nil || n != 2493 {
			t.Fatalf("prune = %d, %v; want 2493", n, err)
		}
		if res := mustVerify(t, l, 7); res.FirstSeq != 2494 {
			t.Fatalf("oldest kept is %d", res.FirstSeq)
		}
	})

	t.Run("pruning every record and restarting continues from the anchor", func(t *testing.T) {
		cfg := Config{Store: st, Prefix: prefixFor(t), Retention: time.Hour, PruneInterval: time.Hour}
		l := openLog(t, cfg)
		recordAll(t, l, old(0, 5)...)
		if n, err := l.Prune(t.Context()); err != nil || n != 5 {
			t.Fatalf("prune = %d, %v", n, err)
		}
		closeLog(t, l)
		l2 := openLog(t, cfg)
		recordAll(t, l2, requests(5, 3)...)
		if res := mustVerify(t, l2, 3); res.FirstSeq != 6 {
			t.Fatalf("chain restarted at %d, want 6", res.FirstSeq)
		}
	})

	t.Run("the writer prunes on its own", func(t *testing.T) {
		l := openLog(t, Config{Store: st, Retention: time.Hour, PruneInterval: 50 * time.Millisecond})
		recordAll(t, l, old(0, 4)...)
		recordAll(t, l, requests(4, 2)...)
		deadline := time.Now().Add(10 * time.Second)
		for {
			res, err := l.Verify(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if res.Valid && res.FirstSeq == 5 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not pruned: %+v", res)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func TestFilesRotate(t *testing.T) {
	st := sharedStore(t)
	dir := t.TempDir()
	l := openLog(t, Config{Store: st, Dir: dir, MaxFileSize: 4096, MaxFiles: 2})
	for i := range 20 {
		recordAll(t, l, requests(i*5, 5)...)
	}
	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 || filepath.Base(files[2]) != ActiveFile {
		t.Fatalf("files = %v, want 2 rotated files and %s", files, ActiveFile)
	}
	var prevLast uint64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
		if fi.Size() > 4096 {
			t.Errorf("%s is %d bytes, over MaxFileSize", f, fi.Size())
		}
		res, err := VerifyFile(f)
		if err != nil || !res.Valid {
			t.Fatalf("%s: %+v, %v", f, res, err)
		}
		if first, last, ok := parseRotated(filepath.Base(f)); ok && (first != res.FirstSeq || last != res.LastSeq) {
			t.Fatalf("%s holds %d..%d", f, res.FirstSeq, res.LastSeq)
		}
		if prevLast != 0 && res.FirstSeq != prevLast+1 {
			t.Fatalf("%s starts at %d, after a file ending at %d", f, res.FirstSeq, prevLast)
		}
		prevLast = res.LastSeq
	}
	res := mustVerifyDir(t, dir, 100)
	if res.FirstSeq == 1 {
		t.Fatal("the oldest files were not deleted")
	}
}

func TestTheFileCatchesUpWithTheStore(t *testing.T) {
	st := sharedStore(t)

	t.Run("records lost from the file in a crash are copied back from the store", func(t *testing.T) {
		dir := t.TempDir()
		cfg := Config{Store: st, Prefix: prefixFor(t), Dir: dir}
		l := openLog(t, cfg)
		recordAll(t, l, requests(0, 20)...)
		closeLog(t, l)
		path := filepath.Join(dir, ActiveFile)
		b, _ := os.ReadFile(path)
		lines := bytes.SplitAfter(b, []byte("\n"))
		cut := append(bytes.Join(lines[:17], nil), lines[17][:30]...) // 17 whole lines and a torn one
		if err := os.WriteFile(path, cut, 0o600); err != nil {
			t.Fatal(err)
		}
		l2 := openLog(t, cfg)
		recordAll(t, l2, requests(20, 5)...)
		res := mustVerifyDir(t, dir, 25)
		if res.Checked != 25 || res.FirstSeq != 1 {
			t.Fatalf("file holds %d records from %d, want 25 from 1", res.Checked, res.FirstSeq)
		}
	})

	t.Run("a store that lost records continues after the file", func(t *testing.T) {
		dir := t.TempDir()
		l := openLog(t, Config{Store: st, Prefix: prefixFor(t) + "before/", Dir: dir})
		recordAll(t, l, requests(0, 10)...)
		closeLog(t, l)
		// A store without those records: a fresh prefix.
		l2 := openLog(t, Config{Store: st, Prefix: prefixFor(t) + "after/", Dir: dir})
		recordAll(t, l2, requests(10, 5)...)
		if res := mustVerify(t, l2, 5); res.FirstSeq != 11 {
			t.Fatalf("store chain starts at %d, want 11", res.FirstSeq)
		}
		mustVerifyDir(t, dir, 15)
	})
}

func TestRecordDoesNotBlockWhenTheStoreIsDown(t *testing.T) {
	e := storetest.Embedded(t)
	l, err := New(t.Context(), Config{Store: store.New(e.Client, ""), MaxPending: 100, BlockTimeout: 5 * time.Millisecond}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	recordAll(t, l, requests(0, 10)...)
	e.Close()

	var slowest time.Duration
	for i := range 400 {
		start := time.Now()
		l.Record(t.Context(), request(10+i))
		slowest = max(slowest, time.Since(start))
	}
	if slowest > 200*time.Millisecond {
		t.Fatalf("the slowest Record took %v with the store down", slowest)
	}
	st := l.Stats()
	if st.Dropped == 0 || st.Pending > 100 {
		t.Fatalf("stats %+v: want drops once 100 records wait", st)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	err = l.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "were not written") {
		t.Fatalf("Close with the store down = %v, want an error counting lost records", err)
	}
	if st := l.Stats(); st.Persisted != 10 || st.Persisted+st.Dropped != 410 {
		t.Fatalf("stats after close %+v: every record must be persisted or counted as dropped", st)
	}
	l.Record(t.Context(), request(999)) // after Close: counted, not a panic
	if err := l.Flush(t.Context()); err != nil {
		t.Fatalf("flush after close with nothing new queued: %v", err)
	}
}
