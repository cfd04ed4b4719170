package ingress

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// An instance that answers 101 to a request that asked for no upgrade gets
// the client a 502, and the metrics and access log say 502 too, not 101.
func TestAFailedUpgradeIsCountedAsA502(t *testing.T) {
	port, ins := startInstances(t, "rogue", 1, tunnelApp(true))
	h := startProxy(t, Config{}, httpService("default", "rogue", port, ins...))
	req, _ := http.NewRequest(http.MethodPost, h.url+"/x", strings.NewReader("body"))
	req.Host = "rogue.default.localhost"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("client got %d: %s", resp.StatusCode, b)
	}
	fivexx := counterValue(t, h.p.m.requests.WithLabelValues("default", "rogue", "5xx"))
	onexx := counterValue(t, h.p.m.requests.WithLabelValues("default", "rogue", "1xx"))
	if fivexx != 1 || onexx != 0 {
		t.Fatalf("client got 502, but metrics count 5xx=%v 1xx=%v", fivexx, onexx)
	}
}
