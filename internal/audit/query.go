package audit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Filter selects records. Empty fields match everything.
type Filter struct {
	// Since and Until bound the request's start time: Since <= Time < Until.
	Since, Until time.Time
	// AfterSeq selects records after this seq, for reading the chain
	// incrementally (a SIEM remembers the last seq it took).
	AfterSeq  uint64
	User      string
	Namespace string
	Verb      string
	Resource  string
	// Limit keeps only the newest Limit matches (still returned oldest
	// first); 0 keeps all.
	Limit int
}

// Matches reports whether e passes the filter (Limit aside).
func (f *Filter) Matches(e *Entry) bool {
	switch {
	case e.Seq <= f.AfterSeq && f.AfterSeq > 0:
		return false
	case !f.Since.IsZero() && e.Time.Before(f.Since):
		return false
	case !f.Until.IsZero() && !e.Time.Before(f.Until):
		return false
	case f.User != "" && e.User != f.User:
		return false
	case f.Namespace != "" && e.Namespace != f.Namespace:
		return false
	case f.Verb != "" && e.Verb != f.Verb:
		return false
	case f.Resource != "" && e.Resource != f.Resource:
		return false
	}
	return true
}

// Query parameter names, shared by the HTTP API and the CLI.
const (
	ParamSince     = "since"
	ParamUntil     = "until"
	ParamAfterSeq  = "afterSeq"
	ParamUser      = "user"
	ParamNamespace = "namespace"
	ParamVerb      = "verb"
	ParamResource  = "resource"
	ParamLimit     = "limit"
)

// FilterFromQuery reads a filter from URL query parameters. since and
// until are RFC 3339 times or durations back from now ("1h"); the error
// wraps v1.ErrInvalid.
func FilterFromQuery(q url.Values, now time.Time) (Filter, error) {
	var f Filter
	var err error
	if f.Since, err = parseWhen(q.Get(ParamSince), now); err != nil {
		return Filter{}, fmt.Errorf("%w: %s: %v", v1.ErrInvalid, ParamSince, err)
	}
	if f.Until, err = parseWhen(q.Get(ParamUntil), now); err != nil {
		return Filter{}, fmt.Errorf("%w: %s: %v", v1.ErrInvalid, ParamUntil, err)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		// Nothing can match: a swapped pair, most likely.
		return Filter{}, fmt.Errorf("%w: %s (%s) is before %s (%s): no record can match", v1.ErrInvalid,
			ParamUntil, f.Until.UTC().Format(time.RFC3339), ParamSince, f.Since.UTC().Format(time.RFC3339))
	}
	if s := q.Get(ParamAfterSeq); s != "" {
		if f.AfterSeq, err = strconv.ParseUint(s, 10, 64); err != nil {
			return Filter{}, fmt.Errorf("%w: %s must be a record number", v1.ErrInvalid, ParamAfterSeq)
		}
	}
	if s := q.Get(ParamLimit); s != "" {
		if f.Limit, err = strconv.Atoi(s); err != nil || f.Limit < 0 {
			return Filter{}, fmt.Errorf("%w: %s must be a number >= 0", v1.ErrInvalid, ParamLimit)
		}
	}
	f.User, f.Namespace, f.Verb, f.Resource = q.Get(ParamUser), q.Get(ParamNamespace), q.Get(ParamVerb), q.Get(ParamResource)
	return f, nil
}

// Values encodes the filter as URL query parameters (FilterFromQuery
// reads them back).
func (f *Filter) Values() url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !f.Since.IsZero() {
		set(ParamSince, f.Since.UTC().Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		set(ParamUntil, f.Until.UTC().Format(time.RFC3339Nano))
	}
	if f.AfterSeq > 0 {
		set(ParamAfterSeq, strconv.FormatUint(f.AfterSeq, 10))
	}
	if f.Limit > 0 {
		set(ParamLimit, strconv.Itoa(f.Limit))
	}
	set(ParamUser, f.User)
	set(ParamNamespace, f.Namespace)
	set(ParamVerb, f.Verb)
	set(ParamResource, f.Resource)
	return q
}

func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("duration %q must be positive (it counts back from now)", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration like 1h", s)
	}
	return t, nil
}

// Query returns the records in the store that match f, oldest first.
func (l *Log) Query(ctx context.Context, f Filter) ([]Entry, error) {
	var out []Entry
	err := l.each(ctx, f, func(e *Entry, _ []byte) error {
		out = append(out, *e)
		return nil
	})
	return out, err
}

// Export writes the records that match f to w as JSON lines, oldest
// first, exactly as stored: each line can be checked with CheckRecord,
// and an unfiltered export is a chain VerifyFile accepts.
func (l *Log) Export(ctx context.Context, w io.Writer, f Filter) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	err := l.each(ctx, f, func(_ *Entry, raw []byte) error {
		bw.Write(raw)
		return bw.WriteByte('\n')
	})
	if err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export audit records: %w", err)
	}
	return nil
}

// each calls fn with the matching records, oldest first. Without a limit
// it streams forward from the first record that can match; with one it
// reads backward from the newest until it has Limit matches, but with
// AfterSeq too it takes the first Limit after that record (a reader
// paging through the chain, whose next AfterSeq is the last seq it got,
// would otherwise skip the records between). Records that cannot be
// parsed are skipped here: Verify reports them.
func (l *Log) each(ctx context.Context, f Filter, fn func(e *Entry, raw []byte) error) error {
	s := l.st
	oldest, newest, err := s.bounds(ctx, 0)
	if err != nil || newest == 0 {
		return err
	}
	from := max(oldest, f.AfterSeq+1)
	if !f.Since.IsZero() {
		start, err := s.firstEndingAfter(ctx, f.Since, from, newest)
		if err != nil {
			return err
		}
		from = max(from, start)
	}
	if from > newest {
		return nil
	}
	if f.Limit <= 0 || f.AfterSeq > 0 {
		var ferr error
		n := 0
		_, err := s.scan(ctx, from, 0, false, 0, func(_ uint64, raw []byte) (bool, error) {
			e, err := ParseRecord(raw)
			if err != nil || !f.Matches(&e) {
				return true, nil
			}
			if ferr = fn(&e, raw); ferr != nil {
				return false, nil
			}
			n++
			return f.Limit <= 0 || n < f.Limit, ctx.Err()
		})
		if ferr != nil {
			return ferr
		}
		return err
	}
	type match struct {
		e   Entry
		raw []byte
	}
	var got []match
	_, err = s.scan(ctx, from, 0, true, 0, func(_ uint64, raw []byte) (bool, error) {
		e, err := ParseRecord(raw)
		if err != nil || !f.Matches(&e) {
			return true, nil
		}
		got = append(got, match{e, raw})
		return len(got) < f.Limit, ctx.Err()
	})
	if err != nil {
		return err
	}
	slices.Reverse(got)
	for i := range got {
		if err := fn(&got[i].e, got[i].raw); err != nil {
			return err
		}
	}
	return nil
}
