package notify

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

func TestErrorAnswersAreCutAtARuneBoundary(t *testing.T) {
	a := strings.Repeat("a", 200)
	tests := []struct {
		name string
		body string // as the server sent it; answer gets what attempt reads
		want string
	}{
		{"an empty body says nothing", "", ""},
		{"a short body is kept, whitespace collapsed", " Bad \n  Request ", ": Bad Request"},
		{"a body of exactly the limit is kept", a, ": " + a},
		{"a 2-byte rune across the cut is left out", a[:199] + "é" + "zz", ": " + a[:199] + "…"},
		{"a 4-byte rune across the cut is left out", a[:198] + "😀" + "zz", ": " + a[:198] + "…"},
		{"a rune just before the cut is kept", a[:198] + "é" + "zz", ": " + a[:198] + "é…"},
		{"a rune across the read limit is left out", strings.Repeat(" ", 511) + "€ more", ""},
		{"a rune ending at the read limit is kept", strings.Repeat(" ", 510) + "é€ more", ": é"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.body)
			if len(b) > maxErrorBody+1 {
				b = b[:maxErrorBody+1]
			}
			got := answer(b)
			if got != tt.want {
				t.Errorf("answer = %q, want %q", got, tt.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("answer %q is not valid UTF-8", got)
			}
		})
	}
}

func TestCutNeverSplitsARune(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"héllo", 10, "héllo"},
		{"héllo", 2, "h"},
		{"héllo", 3, "hé"},
		{"日本", 5, "日"},
		{"日本", 3, "日"},
		{"日本", 2, ""},
		{"\x80\x80\x80\x80\x80", 2, "\x80\x80"}, // not UTF-8: cut where asked
	}
	for _, tt := range tests {
		if got := cut(tt.s, tt.n); got != tt.want {
			t.Errorf("cut(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}

// Many servers echo the request path in an error page ("Cannot POST
// /services/T0/B0/TOKEN"); the answer kept in a Notifier's status, the
// log and `gantry notifier test` must not carry the webhook URL's path or
// query, which are credentials (review helper-160).
func TestErrorAnswersDoNotEchoTheWebhookURL(t *testing.T) {
	e := newEnv(t, true, nil)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, "<pre>Cannot POST %s</pre> (%s) token=%s", r.URL.Path, r.URL.RequestURI(), r.URL.Query().Get("token"))
	}))
	t.Cleanup(echo.Close)
	n := &v1.Notifier{TypeMeta: v1.TypeMeta{Kind: "Notifier"}, Metadata: v1.ObjectMeta{Name: "echo", Namespace: "default"},
		Spec: v1.NotifierSpec{Type: v1.NotifierWebhook, URL: echo.URL + "/services/T0AAAAAAA/B0BBBBBBB/TOPSECRETTOKEN123?token=QUERYSECRET99"}}
	res := e.m.Test(e.ctx, n)
	if res.Delivered || res.StatusCode != http.StatusNotFound {
		t.Fatalf("test notification = %+v, want a 404", res)
	}
	for _, secret := range []string{"TOPSECRETTOKEN123", "QUERYSECRET99", "T0AAAAAAA", "B0BBBBBBB"} {
		if strings.Contains(res.Error, secret) {
			t.Errorf("error %q shows %q from the webhook URL", res.Error, secret)
		}
	}
	if !strings.Contains(res.Error, "Cannot POST …") {
		t.Errorf("error %q lost the rest of the answer", res.Error)
	}
}

func TestScrubURLCutsAPieceAtTheEnd(t *testing.T) {
	u, _ := url.Parse("https://hooks.example/services/T0/B0/TOPSECRETTOKEN123")
	got := string(scrubURL([]byte("Cannot POST /services/T0/B0/TOPSEC"), u))
	if strings.Contains(got, "TOPSEC") {
		t.Errorf("scrubURL left the start of a cut-off token: %q", got)
	}
	if got := string(scrubURL([]byte("Bad Request"), u)); got != "Bad Request" {
		t.Errorf("scrubURL changed an answer without the URL: %q", got)
	}
}
