package apiserver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/pki"
	"github.com/gantry-dev/gantry/internal/store"
)

// Machine A joins as worker-1 and goes dark; machine B joins under the
// dead name (a reinstall or a replacement, as the guide allows). A came
// back with its old identity.json and its certificate still acted as
// worker-1: both agents heartbeat the same Node and ran every instance
// bound to it. Certificates from before the last join are refused now,
// renewal included; B's go on working, and B's writes of its status do
// not undo the join.
func TestAnOldCertificateLosesTheNameToALaterJoin(t *testing.T) {
	k := newTakeover(t)
	certA := k.join()
	certB := k.join()
	if code, body := k.do(&certB, "", "PUT", "/api/v1/nodes/worker-1/status", &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "worker-1"}}); code != http.StatusOK {
		t.Fatalf("B writes its status: %d %s", code, body)
	}
	if n, err := store.Get[*v1.Node](context.Background(), k.srv.Store, "", "worker-1"); err != nil || n.Status.JoinedAt == nil {
		t.Fatalf("after B's register and status write the Node has no joinedAt: %v", err)
	}
	for _, c := range []struct{ method, path string }{
		{"POST", "/api/v1/nodes/worker-1/heartbeat"},
		{"GET", "/api/v1/instances"},
		{"POST", "/api/v1/join/renew"},
	} {
		if code, body := k.do(&certA, "", c.method, c.path, nil); code != http.StatusUnauthorized || !strings.Contains(string(body), "another machine joined") {
			t.Errorf("A's old certificate, %s %s: %d %.200s; want 401 saying another machine joined", c.method, c.path, code, body)
		}
	}
	if code, body := k.do(&certB, "", "POST", "/api/v1/nodes/worker-1/heartbeat", nil); code != http.StatusNoContent {
		t.Errorf("B's heartbeat: %d %s, want 204", code, body)
	}
}

// A's instance watch, opened while it held the name, went on after B's
// join: node certificates were never checked again, and A's agent would
// have run the instances placed for B. It ends with an ERROR now.
func TestAnOpenWatchEndsWhenAnotherMachineJoinsUnderTheName(t *testing.T) {
	k := newTakeover(t)
	certA := k.join()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", k.srv.URL+"/api/v1/instances?watch=true", nil)
	resp, err := k.client(&certA).Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("A's watch: %v %v", err, resp)
	}
	defer resp.Body.Close()
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	k.join() // B
	inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "web-new", Namespace: "default"},
		Spec: v1.InstanceSpec{App: "web", Revision: 1, Node: "worker-1", Template: v1.Template{Image: "web"}}}
	if err := k.srv.Store.Create(context.Background(), inst); err != nil {
		t.Fatal(err)
	}
	for l := range lines {
		if strings.Contains(l, "web-new") {
			t.Fatalf("A's watch from before B's join delivers B's new instance: %.200s", l)
		}
		if strings.Contains(l, `"ERROR"`) {
			if !strings.Contains(l, "another machine joined") {
				t.Errorf("A's watch ended with %.300s; want it to say another machine joined", l)
			}
			return
		}
	}
	t.Fatalf("A's watch did not end with an ERROR: %v", ctx.Err())
}

// A renewal by A whose body came after B's join under the name was
// signed: checked when its headers came, A got a certificate dated after
// the join and held the name again (and cut B's registry credential).
// The name is checked again, under its lock, once the body is in.
func TestARenewalCannotOutlastAJoinUnderTheName(t *testing.T) {
	k := newTakeover(t)
	certA := k.join()
	key, _ := pki.NewKey()
	csr, _ := pki.NodeCSR("worker-1", key)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", k.srv.URL+"/api/v1/join/renew", pr)
	req.Header.Set("Content-Type", "application/json")
	type answer struct {
		code int
		body []byte
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := k.client(&certA).Do(req)
		if err != nil {
			done <- answer{0, []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- answer{resp.StatusCode, b}
	}()
	time.Sleep(300 * time.Millisecond) // the headers are in
	k.join()                           // B
	b, _ := json.Marshal(apiserver.RenewRequest{CSR: string(csr)})
	pw.Write(b)
	pw.Close()
	a := <-done
	if a.code == http.StatusOK {
		var jr apiserver.JoinResponse
		json.Unmarshal(a.body, &jr)
		t.Fatalf("A's renewal, finished after B's join, was signed: A holds the name again")
	}
	if a.code != http.StatusUnauthorized || !strings.Contains(string(a.body), "another machine joined") {
		t.Errorf("A's renewal after B's join: %d %.300s; want 401 saying another machine joined", a.code, a.body)
	}
}
