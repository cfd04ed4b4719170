package apiserver

import (
	"net/url"
	"testing"
	"time"
)

// A follow asked again for an instance's log with the query it first
// sent: with sinceSeconds=0 (gantry logs --tail 0 -f), each retry meant
// "from this retry on", and the lines written between two asks (a
// program starting while its node was not answering yet) were lost. A
// retry widens sinceSeconds by the time since the first ask, and one
// after a line sent asks from that line's time.
func TestLogFollowerResumesWhereItLeftOff(t *testing.T) {
	later := url.Values{"follow": {"true"}}
	f := &logFollower{query: url.Values{"follow": {"true"}, "sinceSeconds": {"0"}}, first: time.Now().Add(-3500 * time.Millisecond)}
	if got := f.resume(later).Get("sinceSeconds"); got != "4" {
		t.Errorf("resume of a follow that sent nothing in 3.5 s: sinceSeconds=%s, want 4", got)
	}
	f.query = url.Values{"follow": {"true"}, "tail": {"5"}}
	if q := f.resume(later); q.Get("tail") != "5" || q.Has("sinceSeconds") {
		t.Errorf("resume of a follow with tail that sent nothing: %v", q)
	}
	f.last = time.Date(2026, 11, 29, 12, 0, 0, 5, time.UTC)
	if q := f.resume(later); q.Get("since") != "2026-11-29T12:00:00.000000005Z" || q.Has("tail") || q.Has("sinceSeconds") {
		t.Errorf("resume after a line: %v", q)
	}
}
