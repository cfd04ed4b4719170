package image

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// go-containerregistry falls back to plain HTTP by itself when HTTPS fails
// for a private address (10/8, 172.16/12, 192.168/16), and would send the
// token as Basic auth in clear there. Auth allows plain HTTP only to a
// loopback registry unless Insecure is set.
func TestNoPlainHTTPToAPrivateAddressWithoutInsecure(t *testing.T) {
	var mu sync.Mutex
	var sawAuth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "" {
			mu.Lock()
			sawAuth = append(sawAuth, a)
			mu.Unlock()
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	plain := strings.TrimPrefix(srv.URL, "http://")

	// Every dial lands on the plain-HTTP server, as if 10.0.0.5:5000 (or a
	// man in the middle on the LAN) answered.
	old := remote.DefaultTransport
	tr := old.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, plain)
	}
	remote.DefaultTransport = tr
	defer func() { remote.DefaultTransport = old }()

	for _, host := range []string{"10.0.0.5:5000", "192.168.1.10:5000"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := Inspect(ctx, host+"/team/app:v1", Auth{Token: "gtk_secret_token"})
		cancel()
		mu.Lock()
		got := append([]string(nil), sawAuth...)
		sawAuth = nil
		mu.Unlock()
		if len(got) > 0 {
			t.Errorf("%s without Insecure: token sent over plain HTTP (%q); inspect err %v", host, got, err)
		}
	}
}
