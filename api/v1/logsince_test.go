package v1

import (
	"net/url"
	"testing"
	"time"
)

// gantry logs --since 10m and --tail 0 -f sent times of the client's
// clock, so a laptop ahead of the node lost lines and one behind showed
// old ones. sinceSeconds is counted back on the clock of the node that
// answers.
func TestLogSince(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		query string
		want  time.Time
		bad   bool
	}{
		{"", time.Time{}, false},
		{"since=2026-11-29T11:00:00Z", now.Add(-time.Hour), false},
		{"sinceSeconds=600", now.Add(-10 * time.Minute), false},
		{"sinceSeconds=0", now, false},
		{"sinceSeconds=-1", time.Time{}, true},
		{"sinceSeconds=1.5", time.Time{}, true},
		{"sinceSeconds=99999999999999999999", time.Time{}, true},
		{"since=10m", time.Time{}, true},
		{"since=2026-11-29T11:00:00Z&sinceSeconds=5", time.Time{}, true},
	} {
		q, _ := url.ParseQuery(tc.query)
		got, err := LogSince(q, now)
		if (err != nil) != tc.bad || !got.Equal(tc.want) {
			t.Errorf("%q: %v, %v; want %v (error %v)", tc.query, got, err, tc.want, tc.bad)
		}
	}
}

func TestLogFollow(t *testing.T) {
	for q, want := range map[string]bool{"": false, "follow=true": true, "follow=1": true, "follow=TRUE": true, "follow=false": false, "follow=0": false} {
		v, _ := url.ParseQuery(q)
		if got, err := LogFollow(v); err != nil || got != want {
			t.Errorf("%q: %v %v; want %v", q, got, err, want)
		}
	}
	v, _ := url.ParseQuery("follow=yes")
	if _, err := LogFollow(v); err == nil {
		t.Error("follow=yes accepted")
	}
}
