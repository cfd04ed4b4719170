package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/stream"
)

// The RBAC matrix of issue 6: every built-in role, bound in namespace
// "rbac", plus a user with no binding and a caller with no credential,
// against every API route and registry operation.
//
// The table says who is allowed, from what the issue says the roles mean:
//
//	cluster-admin  anything, anywhere
//	admin          anything inside its namespace (including secret values
//	               and exec), reading the namespace itself; nothing
//	               cluster-scoped (nodes, users, tokens, roles, bindings,
//	               audit, metrics, key rotation, registry GC)
//	developer      deploy, scale, roll out, logs, exec, push images; read
//	               everything of the namespace that is not a secret value;
//	               manage secrets without reading them back
//	viewer         read-only, no secrets at all, no exec
//	unbound user   nothing but pulling library/* images
//	no credential  401 everywhere
//
// Allowed requests must get the route's success status (or, for kinds
// users may not write directly, the 422 or 404 that comes after the
// permission check); denied ones 403 naming the missing permission.

// Role keys in the table.
const (
	keyClusterAdmin = 'C'
	keyAdmin        = 'A'
	keyDeveloper    = 'D'
	keyViewer       = 'V'
	keyUnbound      = 'U'
	keyAnonymous    = 'N'
)

type rbacRole struct {
	name  string // as in the test names
	key   byte
	user  string
	token string
	sfx   string // suffix of the objects this role creates or deletes
}

// rbacOp is one request of the matrix.
type rbacOp struct {
	name string
	// allow lists the keys of the roles that may do it.
	allow string
	// want is the status an allowed request gets.
	want int
	// perm is what a denial must name ("create apps in namespace
	// \"rbac\"" for the API, "push rbac/x" for the registry).
	perm string
	// registry marks registry operations, whose denials read
	// differently.
	registry bool
	// pullFirst marks a registry write that also reads: a role that may
	// not even pull is told that pull is missing.
	pullFirst bool
	do        func(r *rbacRole) reply
}

func apiPerm(verb, res, ns string) string {
	if ns != "" {
		return fmt.Sprintf("%s %s in namespace %q", verb, res, ns)
	}
	return verb + " " + res
}

// rbacFixtures are the objects the matrix acts on.
type rbacFixtures struct {
	node, inst, event, fixtureToken string
	delTokens                       map[string]string // role suffix → token id
	delDigests                      map[string]string // role suffix → manifest digest
}

func TestRBACMatrix(t *testing.T) {
	c := StartCluster(t, ClusterOptions{})
	admin := c.Token
	const ns = "rbac"
	p := "/api/v1/namespaces/" + ns

	// The people of the matrix.
	roles := []*rbacRole{
		{name: "anonymous", key: keyAnonymous, sfx: "anon"},
		{name: "unbound", key: keyUnbound, user: "rbac-unbound", sfx: "unbound"},
		{name: "viewer", key: keyViewer, user: "rbac-viewer", sfx: "viewer"},
		{name: "developer", key: keyDeveloper, user: "rbac-developer", sfx: "developer"},
		{name: "admin", key: keyAdmin, user: "rbac-admin", sfx: "admin"},
		{name: "cluster-admin", key: keyClusterAdmin, user: "rbac-cluster-admin", sfx: "cluster-admin"},
	}
	c.MustGantry("", "create", "namespace", ns)
	c.MustGantry("", "create", "namespace", "other")
	for _, r := range roles {
		switch r.key {
		case keyAnonymous:
		case keyUnbound:
			r.token = c.createUser(r.user, "", "")
		default:
			r.token = c.createUser(r.user, r.name, ns)
		}
	}

	fx := rbacSetup(t, c, roles)
	mustOK := func(r reply, what string) reply {
		t.Helper()
		if r.Code < 200 || r.Code > 299 {
			t.Fatalf("%s: %s", what, r)
		}
		return r
	}
	// update GETs an object as the cluster admin and PUTs it back as the
	// role after edit, retrying when a controller changed it in between.
	update := func(path string, r *rbacRole, edit func(map[string]any)) reply {
		for attempt := 0; ; attempt++ {
			cur := mustOK(c.apiCall("GET", path, admin, nil), "get "+path)
			var obj map[string]any
			if err := json.Unmarshal(cur.Body, &obj); err != nil {
				t.Fatal(err)
			}
			delete(obj, "status")
			if edit != nil {
				edit(obj)
			}
			out := c.apiCall("PUT", path, r.token, obj)
			if out.Code == http.StatusConflict && attempt < 5 {
				continue
			}
			return out
		}
	}
	get := func(path string) func(r *rbacRole) reply {
		return func(r *rbacRole) reply { return c.apiCall("GET", path, r.token, nil) }
	}
	post := func(path string, body func(r *rbacRole) any) func(r *rbacRole) reply {
		return func(r *rbacRole) reply {
			var b any = map[string]any{}
			if body != nil {
				b = body(r)
			}
			return c.apiCall("POST", path, r.token, b)
		}
	}
	del := func(path func(r *rbacRole) string) func(r *rbacRole) reply {
		return func(r *rbacRole) reply { return c.apiCall("DELETE", path(r), r.token, nil) }
	}
	named := func(prefix string) func(r *rbacRole) string {
		return func(r *rbacRole) string { return prefix + r.sfx }
	}
	meta := func(name string) map[string]any { return map[string]any{"name": name} }
	nsOps := func(plural, fixture string, allowRead, allowWrite string, create func(r *rbacRole) any, edit func(map[string]any)) []rbacOp {
		return []rbacOp{
			{name: "list " + plural, allow: allowRead, want: 200, perm: apiPerm("list", plural, ns), do: get(p + "/" + plural)},
			{name: "get one of the " + plural, allow: allowRead, want: 200, perm: apiPerm("get", plural, ns), do: get(p + "/" + plural + "/" + fixture)},
			{name: "create one of the " + plural, allow: allowWrite, want: 201, perm: apiPerm("create", plural, ns), do: post(p+"/"+plural, create)},
			{name: "update one of the " + plural, allow: allowWrite, want: 200, perm: apiPerm("update", plural, ns),
				do: func(r *rbacRole) reply { return update(p+"/"+plural+"/"+fixture, r, edit) }},
			{name: "delete one of the " + plural, allow: allowWrite, want: 200, perm: apiPerm("delete", plural, ns), do: del(named(p + "/" + plural + "/del-"))},
		}
	}
	clusterOps := func(plural, fixture string, create func(r *rbacRole) any, delPath func(r *rbacRole) string) []rbacOp {
		base := "/api/v1/" + plural
		return []rbacOp{
			{name: "list " + plural, allow: "C", want: 200, perm: apiPerm("list", plural, ""), do: get(base)},
			{name: "get one of the " + plural, allow: "C", want: 200, perm: apiPerm("get", plural, ""), do: get(base + "/" + fixture)},
			{name: "create one of the " + plural, allow: "C", want: 201, perm: apiPerm("create", plural, ""), do: post(base, create)},
			{name: "update one of the " + plural, allow: "C", want: 200, perm: apiPerm("update", plural, ""),
				do: func(r *rbacRole) reply { return update(base+"/"+fixture, r, nil) }},
			{name: "delete one of the " + plural, allow: "C", want: 200, perm: apiPerm("delete", plural, ""), do: del(delPath)},
		}
	}

	var ops []rbacOp
	// Apps and their subresources.
	ops = append(ops, nsOps("apps", "hist", "CADV", "CAD", func(r *rbacRole) any {
		return map[string]any{"metadata": meta("new-" + r.sfx), "spec": map[string]any{"image": "library/busybox:latest", "replicas": 0}}
	}, nil)...)
	ops = append(ops,
		rbacOp{name: "watch apps", allow: "CADV", want: 200, perm: apiPerm("watch", "apps", ns), do: func(r *rbacRole) reply {
			return watchStatus(t, c, p+"/apps?watch=true", r.token)
		}},
		rbacOp{name: "apply an app (create or replace)", allow: "CAD", want: 200, perm: apiPerm("apply", "apps", ns), do: func(r *rbacRole) reply {
			return c.apiCall("PUT", p+"/apps/hist?apply=true", r.token, map[string]any{"metadata": meta("hist"),
				"spec": map[string]any{"image": "library/busybox:latest", "replicas": 0, "env": []map[string]string{{"name": "V", "value": "2"}}}})
		}},
		rbacOp{name: "list apps in every namespace", allow: "C", want: 200, perm: apiPerm("list", "apps", ""), do: get("/api/v1/apps")},
		rbacOp{name: "list apps of another namespace", allow: "C", want: 200, perm: apiPerm("list", "apps", "other"), do: get("/api/v1/namespaces/other/apps")},
		rbacOp{name: "scale an app", allow: "CAD", want: 200, perm: apiPerm("update", "apps/scale", ns), do: func(r *rbacRole) reply {
			return c.apiCall("PUT", p+"/apps/hist/scale", r.token, map[string]int{"replicas": 0})
		}},
		rbacOp{name: "roll an app back", allow: "CAD", want: 200, perm: apiPerm("update", "apps/rollback", ns), do: post(p+"/apps/hist/rollback", nil)},
		rbacOp{name: "pause an app's rollout", allow: "CAD", want: 200, perm: apiPerm("update", "apps/pause", ns), do: post(p+"/apps/hist/pause", nil)},
		rbacOp{name: "resume an app's rollout", allow: "CAD", want: 200, perm: apiPerm("update", "apps/resume", ns), do: post(p+"/apps/hist/resume", nil)},
		rbacOp{name: "restart an app", allow: "CAD", want: 200, perm: apiPerm("update", "apps/restart", ns), do: post(p+"/apps/hist/restart", nil)},
		rbacOp{name: "read an app's logs", allow: "CADV", want: 200, perm: apiPerm("get", "apps/logs", ns), do: get(p + "/apps/web/logs")},
		rbacOp{name: "read an app's metrics", allow: "CADV", want: 200, perm: apiPerm("get", "apps/metrics", ns), do: get(p + "/apps/web/metrics")},
	)
	// Instances: users may not create or edit them (422 after the
	// permission check), may delete them (404 for one that is not there).
	ip := p + "/instances/" + fx.inst
	ops = append(ops,
		rbacOp{name: "list instances", allow: "CADV", want: 200, perm: apiPerm("list", "instances", ns), do: get(p + "/instances")},
		rbacOp{name: "get an instance", allow: "CADV", want: 200, perm: apiPerm("get", "instances", ns), do: get(ip)},
		rbacOp{name: "create an instance", allow: "CA", want: 422, perm: apiPerm("create", "instances", ns), do: post(p+"/instances", func(r *rbacRole) any { return map[string]any{"metadata": meta("new-" + r.sfx)} })},
		rbacOp{name: "update an instance", allow: "CA", want: 422, perm: apiPerm("update", "instances", ns), do: func(r *rbacRole) reply { return update(ip, r, nil) }},
		rbacOp{name: "delete an instance", allow: "CAD", want: 404, perm: apiPerm("delete", "instances", ns), do: del(named(p + "/instances/gone-"))},
		rbacOp{name: "read an instance's logs", allow: "CADV", want: 200, perm: apiPerm("get", "instances/logs", ns), do: get(ip + "/logs")},
		rbacOp{name: "read an instance's metrics", allow: "CADV", want: 200, perm: apiPerm("get", "instances/metrics", ns), do: get(ip + "/metrics")},
		rbacOp{name: "exec in an instance", allow: "CAD", want: http.StatusSwitchingProtocols, perm: apiPerm("create", "instances/exec", ns), do: func(r *rbacRole) reply {
			return execStatus(t, c, r.token, ns, fx.inst)
		}},
	)
	// Revisions and events are read-only for everyone: writes that pass
	// the permission check are refused with 422.
	ops = append(ops,
		rbacOp{name: "list revisions", allow: "CADV", want: 200, perm: apiPerm("list", "revisions", ns), do: get(p + "/revisions")},
		rbacOp{name: "get a revision", allow: "CADV", want: 200, perm: apiPerm("get", "revisions", ns), do: get(p + "/revisions/" + v1.RevisionName("hist", 1))},
		rbacOp{name: "create a revision", allow: "CA", want: 422, perm: apiPerm("create", "revisions", ns), do: post(p+"/revisions", nil)},
		rbacOp{name: "update a revision", allow: "CA", want: 422, perm: apiPerm("update", "revisions", ns), do: func(r *rbacRole) reply {
			return update(p+"/revisions/"+v1.RevisionName("hist", 1), r, nil)
		}},
		rbacOp{name: "delete a revision", allow: "CA", want: 422, perm: apiPerm("delete", "revisions", ns), do: del(func(*rbacRole) string { return p + "/revisions/" + v1.RevisionName("hist", 1) })},
		rbacOp{name: "list events", allow: "CADV", want: 200, perm: apiPerm("list", "events", ns), do: get(p + "/events")},
		rbacOp{name: "get an event", allow: "CADV", want: 200, perm: apiPerm("get", "events", ns), do: get(p + "/events/" + fx.event)},
		rbacOp{name: "create an event", allow: "CA", want: 422, perm: apiPerm("create", "events", ns), do: post(p+"/events", nil)},
		rbacOp{name: "update an event", allow: "CA", want: 422, perm: apiPerm("update", "events", ns), do: func(r *rbacRole) reply {
			return update(p+"/events/"+fx.event, r, nil)
		}},
		rbacOp{name: "delete an event", allow: "CA", want: 422, perm: apiPerm("delete", "events", ns), do: del(func(*rbacRole) string { return p + "/events/" + fx.event })},
	)
	// Secrets: the viewer sees none; only admins read values back.
	ops = append(ops, nsOps("secrets", "s1", "CAD", "CAD", func(r *rbacRole) any {
		return map[string]any{"metadata": meta("new-" + r.sfx), "stringData": map[string]string{"k": "v"}}
	}, func(o map[string]any) {
		// A read returns key names only; an update sends the values.
		delete(o, "keys")
		o["stringData"] = map[string]string{"k": "v"}
	})...)
	ops = append(ops,
		rbacOp{name: "apply a secret (gantry secret set)", allow: "CAD", want: 200, perm: apiPerm("apply", "secrets", ns), do: func(r *rbacRole) reply {
			return c.apiCall("PUT", p+"/secrets/s1?apply=true", r.token, map[string]any{"metadata": meta("s1"), "stringData": map[string]string{"k": "v"}})
		}},
		rbacOp{name: "reveal a secret's values", allow: "CA", want: 200, perm: apiPerm("get", "secrets/reveal", ns), do: get(p + "/secrets/s1/reveal")},
	)
	ops = append(ops, nsOps("alertrules", "ar", "CADV", "CAD", func(r *rbacRole) any {
		return map[string]any{"metadata": meta("new-" + r.sfx), "spec": map[string]any{"condition": "not-ready"}}
	}, nil)...)
	// Viewers do not read notifiers: their URLs and headers are credentials.
	ops = append(ops, nsOps("notifiers", "nt", "CAD", "CAD", func(r *rbacRole) any {
		return map[string]any{"metadata": meta("new-" + r.sfx), "spec": map[string]any{"type": "webhook", "url": "https://hooks.example.com/gantry"}}
	}, nil)...)
	ops = append(ops, rbacOp{name: "send a test notification", allow: "CAD", want: 200, perm: apiPerm("update", "notifiers/test", ns), do: post(p+"/notifiers/nt/test", nil)})
	// Namespaces: members read their own; only cluster admins do more.
	ops = append(ops,
		rbacOp{name: "list namespaces", allow: "C", want: 200, perm: apiPerm("list", "namespaces", ""), do: get("/api/v1/namespaces")},
		rbacOp{name: "get the namespace of the binding", allow: "CADV", want: 200, perm: apiPerm("get", "namespaces", ""), do: get("/api/v1/namespaces/" + ns)},
		rbacOp{name: "get another namespace", allow: "C", want: 200, perm: apiPerm("get", "namespaces", ""), do: get("/api/v1/namespaces/other")},
		rbacOp{name: "create a namespace", allow: "C", want: 201, perm: apiPerm("create", "namespaces", ""), do: post("/api/v1/namespaces", func(r *rbacRole) any { return map[string]any{"metadata": meta("new-" + r.sfx)} })},
		rbacOp{name: "update the namespace of the binding (quota, policy)", allow: "C", want: 200, perm: apiPerm("update", "namespaces", ""), do: func(r *rbacRole) reply { return update("/api/v1/namespaces/"+ns, r, nil) }},
		rbacOp{name: "delete a namespace", allow: "C", want: 200, perm: apiPerm("delete", "namespaces", ""), do: del(named("/api/v1/namespaces/del-"))},
	)
	// Nodes: users may not create them (422) and the ones to delete do
	// not exist (404): the real node stays.
	ops = append(ops,
		rbacOp{name: "list nodes", allow: "C", want: 200, perm: apiPerm("list", "nodes", ""), do: get("/api/v1/nodes")},
		rbacOp{name: "get a node", allow: "C", want: 200, perm: apiPerm("get", "nodes", ""), do: get("/api/v1/nodes/" + fx.node)},
		rbacOp{name: "create a node", allow: "C", want: 422, perm: apiPerm("create", "nodes", ""), do: post("/api/v1/nodes", func(r *rbacRole) any { return map[string]any{"metadata": meta("new-" + r.sfx)} })},
		rbacOp{name: "update a node", allow: "C", want: 200, perm: apiPerm("update", "nodes", ""), do: func(r *rbacRole) reply { return update("/api/v1/nodes/"+fx.node, r, nil) }},
		rbacOp{name: "delete a node", allow: "C", want: 404, perm: apiPerm("delete", "nodes", ""), do: del(named("/api/v1/nodes/gone-"))},
		rbacOp{name: "heartbeat for a node", allow: "C", want: 204, perm: apiPerm("update", "nodes/heartbeat", ""), do: post("/api/v1/nodes/"+fx.node+"/heartbeat", nil)},
		rbacOp{name: "list join tokens", allow: "C", want: 200, perm: apiPerm("list", "jointokens", ""), do: get("/api/v1/jointokens")},
		rbacOp{name: "create a join token", allow: "C", want: 201, perm: apiPerm("create", "jointokens", ""), do: post("/api/v1/jointokens", nil)},
		rbacOp{name: "read a node's metrics", allow: "C", want: 200, perm: apiPerm("get", "nodes/metrics", ""), do: get("/api/v1/nodes/" + fx.node + "/metrics")},
	)
	ops = append(ops, clusterOps("users", "fixture", func(r *rbacRole) any { return map[string]any{"metadata": meta("new-" + r.sfx)} }, named("/api/v1/users/del-"))...)
	// Everyone may list and make tokens of their own (the list shows
	// only theirs: see TestUserManagesTheirOwnTokensOnly); another
	// user's, as here, only a cluster admin may touch.
	tokenOps := clusterOps("tokens", fx.fixtureToken, func(r *rbacRole) any { return map[string]any{"spec": map[string]any{"user": "fixture"}} },
		func(r *rbacRole) string { return "/api/v1/tokens/" + fx.delTokens[r.sfx] })
	for i := range tokenOps {
		if strings.HasPrefix(tokenOps[i].name, "list ") {
			tokenOps[i].allow = "CADVU"
		}
	}
	ops = append(ops, tokenOps...)
	ops = append(ops, clusterOps("roles", "custom", func(r *rbacRole) any {
		return map[string]any{"metadata": meta("new-" + r.sfx), "spec": map[string]any{"rules": []map[string]any{{"verbs": []string{"get"}, "resources": []string{"apps"}}}}}
	}, named("/api/v1/roles/del-"))...)
	ops = append(ops, clusterOps("rolebindings", "fixture", func(r *rbacRole) any {
		return map[string]any{"metadata": meta("new-" + r.sfx), "spec": map[string]any{"user": "nobody", "role": "viewer", "namespace": ns}}
	}, named("/api/v1/rolebindings/del-"))...)
	// The endpoints outside the resource tree.
	ops = append(ops,
		rbacOp{name: "ask who it is", allow: "CADVU", want: 200, perm: "", do: get("/api/v1/whoami")},
		rbacOp{name: "scrape /metrics", allow: "C", want: 200, perm: "get metrics", do: get("/metrics")},
		rbacOp{name: "query the audit trail", allow: "C", want: 200, perm: "list audit", do: get("/api/v1/audit")},
		rbacOp{name: "export the audit trail", allow: "C", want: 200, perm: "list audit/export", do: get("/api/v1/audit/export")},
		rbacOp{name: "verify the audit trail", allow: "C", want: 200, perm: "get audit/verify", do: get("/api/v1/audit/verify")},
		rbacOp{name: "rotate the secret master key", allow: "C", want: 200, perm: "update secretkeys", do: post("/api/v1/secret-key/rotate", nil)},
		rbacOp{name: "collect registry garbage", allow: "C", want: 200, perm: "update registry/gc", do: post("/api/v1/registry/gc", nil)},
	)
	// The registry.
	blob := func(r *rbacRole) ([]byte, string) {
		b := []byte("layer of " + r.name)
		sum := sha256.Sum256(b)
		return b, "sha256:" + hex.EncodeToString(sum[:])
	}
	ops = append(ops,
		rbacOp{name: "pull an image of the namespace", allow: "CADV", want: 200, perm: "pull rbac/tool", registry: true, do: func(r *rbacRole) reply {
			return c.regCall("GET", "/v2/rbac/tool/manifests/v1", r.token, nil, manifestAccept)
		}},
		rbacOp{name: "push a blob to the namespace", allow: "CAD", want: 201, perm: "push rbac/push-", registry: true, pullFirst: true, do: func(r *rbacRole) reply {
			b, d := blob(r)
			return c.regCall("POST", "/v2/rbac/push-"+r.sfx+"/blobs/uploads/?digest="+d, r.token, b, nil)
		}},
		rbacOp{name: "delete an image of the namespace", allow: "CAD", want: 202, perm: "delete rbac/del-", registry: true, do: func(r *rbacRole) reply {
			return c.regCall("DELETE", "/v2/rbac/del-"+r.sfx+"/manifests/"+fx.delDigests[r.sfx], r.token, nil, nil)
		}},
		rbacOp{name: "pull an image of another namespace", allow: "C", want: 200, perm: "pull other/tool", registry: true, do: func(r *rbacRole) reply {
			return c.regCall("GET", "/v2/other/tool/manifests/v1", r.token, nil, manifestAccept)
		}},
		rbacOp{name: "pull a library image", allow: "CADVU", want: 200, perm: "pull library/busybox", registry: true, do: func(r *rbacRole) reply {
			return c.regCall("GET", "/v2/library/busybox/manifests/latest", r.token, nil, manifestAccept)
		}},
	)

	for _, r := range roles {
		t.Run(r.name, func(t *testing.T) {
			for _, op := range ops {
				allowed := strings.IndexByte(op.allow, r.key) >= 0
				verdict := "may not"
				if allowed {
					verdict = "may"
				}
				t.Run(verdict+" "+op.name, func(t *testing.T) {
					got := op.do(r)
					switch {
					case r.key == keyAnonymous:
						if got.Code != http.StatusUnauthorized {
							t.Fatalf("no credential: got %s, want 401", got)
						}
					case allowed:
						if got.Code != op.want {
							t.Fatalf("got %s, want %d", got, op.want)
						}
					default:
						checkDenied(t, got, r, op)
					}
				})
			}
		})
	}

	t.Run("exec and followed logs end when their token is revoked", func(t *testing.T) {
		testStreamsEndOnRevocation(t, c, ns, fx.inst)
	})

	t.Run("denied deletes removed nothing", func(t *testing.T) {
		for _, r := range roles {
			var paths []string
			if !strings.ContainsRune("CAD", rune(r.key)) {
				for _, plural := range []string{"apps", "secrets", "alertrules", "notifiers"} {
					paths = append(paths, p+"/"+plural+"/del-"+r.sfx)
				}
			}
			if r.key != keyClusterAdmin {
				paths = append(paths, "/api/v1/namespaces/del-"+r.sfx, "/api/v1/users/del-"+r.sfx, "/api/v1/roles/del-"+r.sfx,
					"/api/v1/rolebindings/del-"+r.sfx, "/api/v1/tokens/"+fx.delTokens[r.sfx])
			}
			for _, path := range paths {
				if got := c.apiCall("GET", path, admin, nil); got.Code != 200 {
					t.Errorf("%s could not delete %s, but it is gone: %s", r.name, path, got)
				}
			}
			if !strings.ContainsRune("CAD", rune(r.key)) {
				if got := c.regCall("GET", "/v2/rbac/del-"+r.sfx+"/manifests/"+fx.delDigests[r.sfx], admin, nil, manifestAccept); got.Code != 200 {
					t.Errorf("%s could not delete image rbac/del-%s, but it is gone: %s", r.name, r.sfx, got)
				}
			}
		}
	})
}

// testStreamsEndOnRevocation opens an exec session and followed logs as
// a developer, revokes the developer's token, and checks that both end
// with the right, and that following again is refused.
func testStreamsEndOnRevocation(t *testing.T, c *Cluster, ns, inst string) {
	tok := c.createUser("rbac-streamer", "developer", ns)
	cl := c.clientAs(tok)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sc, closer, err := cl.Exec(ctx, ns, inst, client.ExecOptions{Cmd: []string{"sleep", "300"}})
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	defer closer.Close()
	logsPath := "/api/v1/namespaces/" + ns + "/instances/" + inst + "/logs"
	body, err := cl.Stream(ctx, logsPath, url.Values{"follow": {"true"}})
	if err != nil {
		t.Fatalf("follow logs: %v", err)
	}
	defer body.Close()
	execEnded := make(chan string, 1)
	go func() {
		for {
			typ, p, err := sc.Read()
			switch {
			case err != nil:
				execEnded <- "connection ended: " + err.Error()
				return
			case typ == stream.Error:
				execEnded <- "error frame: " + string(p)
				return
			case typ == stream.Exit:
				execEnded <- fmt.Sprintf("exit %d", stream.ParseExit(p))
				return
			}
		}
	}()
	logsEnded := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, body)
		logsEnded <- err
	}()
	select {
	case how := <-execEnded:
		t.Fatalf("the exec session ended before the token was revoked (%s)", how)
	case <-logsEnded:
		t.Fatal("the followed logs ended before the token was revoked")
	case <-time.After(time.Second):
	}

	c.MustGantry("", "token", "revoke", strings.Split(tok, "_")[1])
	select {
	case how := <-execEnded:
		// Through the in-process agent of `gantry up` the command is
		// ended with an error frame that says why.
		if !strings.Contains(how, "may no longer make it") {
			t.Errorf("the exec session ended with %q; want an error saying its caller may no longer make it", how)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the exec session went on 15s after its token was revoked")
	}
	select {
	case <-logsEnded:
	case <-time.After(15 * time.Second):
		t.Fatal("the followed logs went on 15s after their token was revoked")
	}
	if _, err := cl.Stream(ctx, logsPath, url.Values{"follow": {"true"}}); !errors.Is(err, v1.ErrUnauthorized) {
		t.Fatalf("following again with the revoked token: %v, want 401", err)
	}
}

func checkDenied(t *testing.T, got reply, r *rbacRole, op rbacOp) {
	t.Helper()
	if got.Code != http.StatusForbidden {
		t.Fatalf("got %s, want 403", got)
	}
	if op.registry {
		action, repo, _ := strings.Cut(op.perm, " ")
		ns, _, _ := strings.Cut(repo, "/")
		if op.pullFirst && r.key == keyUnbound {
			action = "pull"
		}
		need := "write"
		if action == "pull" {
			need = "read"
		}
		for _, want := range []string{"user " + r.user + " may not " + action + " " + repo, action + " needs " + need + " on namespace " + ns} {
			if !strings.Contains(got.Msg, want) {
				t.Fatalf("denial %q does not say %q", got.Msg, want)
			}
		}
		return
	}
	want := fmt.Sprintf("user %q may not %s", r.user, op.perm)
	if !strings.Contains(got.Msg, want) {
		t.Fatalf("denial %q does not name the permission: want %q", got.Msg, want)
	}
}

// rbacSetup makes the objects the matrix reads, changes and deletes, as
// the cluster admin.
func rbacSetup(t *testing.T, c *Cluster, roles []*rbacRole) *rbacFixtures {
	t.Helper()
	admin := c.Token
	fx := &rbacFixtures{node: c.Node, delTokens: map[string]string{}, delDigests: map[string]string{}}
	must := func(r reply, what string) reply {
		t.Helper()
		if r.Code < 200 || r.Code > 299 {
			t.Fatalf("setup: %s: %s", what, r)
		}
		return r
	}
	c.Push(BusyboxImage(t), "library/busybox:latest")
	c.Push(BusyboxImage(t), "rbac/tool:v1")
	c.Push(BusyboxImage(t), "other/tool:v1")

	var docs []string
	docs = append(docs, sleeperApp("web", "rbac", 1, ""))
	docs = append(docs, sleeperApp("hist", "rbac", 0, "env: {V: \"1\"}\n"))
	docs = append(docs, "kind: AlertRule\nname: ar\nnamespace: rbac\ncondition: not-ready\n")
	docs = append(docs, "kind: Notifier\nname: nt\nnamespace: rbac\ntype: webhook\nurl: https://hooks.example.com/gantry\n")
	docs = append(docs, "kind: Role\nname: custom\nrules: [{verbs: [get], resources: [apps]}]\n")
	docs = append(docs, "kind: RoleBinding\nmetadata: {name: fixture}\nspec: {user: nobody, role: viewer, namespace: rbac}\n")
	for _, r := range roles {
		s := r.sfx
		docs = append(docs,
			sleeperApp("del-"+s, "rbac", 0, ""),
			"kind: AlertRule\nname: del-"+s+"\nnamespace: rbac\ncondition: not-ready\n",
			"kind: Notifier\nname: del-"+s+"\nnamespace: rbac\ntype: webhook\nurl: https://hooks.example.com/gantry\n",
			"kind: Role\nname: del-"+s+"\nrules: [{verbs: [get], resources: [apps]}]\n",
			"kind: RoleBinding\nmetadata: {name: del-"+s+"}\nspec: {user: nobody, role: viewer, namespace: rbac}\n",
			"kind: Namespace\nname: del-"+s+"\n",
			"kind: User\nname: del-"+s+"\n",
		)
	}
	c.apply(strings.Join(docs, "---\n"))
	// A second revision of hist, for rollbacks.
	c.apply(sleeperApp("hist", "rbac", 0, "env: {V: \"2\"}\n"))
	c.MustGantry("", "secret", "set", "s1", "k=v", "-n", "rbac")
	c.MustGantry("", "user", "create", "fixture")
	for _, r := range roles {
		c.MustGantry("", "secret", "set", "del-"+r.sfx, "k=v", "-n", "rbac")
		tok, err := c.Client.CreateToken(context.Background(), v1.TokenSpec{User: "fixture", Description: "deleted by " + r.name})
		if err != nil {
			t.Fatal(err)
		}
		fx.delTokens[r.sfx] = tok.Metadata.Name
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		_, ref := c.Push(img, "rbac/del-"+r.sfx+":v1")
		_, d, _ := strings.Cut(ref, "@")
		fx.delDigests[r.sfx] = d
	}
	tok, err := c.Client.CreateToken(context.Background(), v1.TokenSpec{User: "fixture", Description: "read and updated by the matrix, never used"})
	if err != nil {
		t.Fatal(err)
	}
	fx.fixtureToken = tok.Metadata.Name

	fx.inst = c.instanceOf("rbac", "web").Metadata.Name
	var evs struct{ Items []v1.Event }
	if err := json.Unmarshal(must(c.apiCall("GET", "/api/v1/namespaces/rbac/events", admin, nil), "list events").Body, &evs); err != nil {
		t.Fatal(err)
	}
	if len(evs.Items) == 0 {
		t.Fatal("setup: no events in namespace rbac")
	}
	fx.event = evs.Items[0].Metadata.Name
	return fx
}

// watchStatus opens a watch and returns the status of its response.
func watchStatus(t *testing.T, c *Cluster, path, token string) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", c.Client.Server()+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	hc := c.httpClient(nil)
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return reply{Code: -1, Msg: err.Error()}
	}
	defer resp.Body.Close()
	r := reply{Code: resp.StatusCode}
	if resp.StatusCode != 200 {
		var st v1.Status
		json.NewDecoder(resp.Body).Decode(&st)
		r.Msg = st.Message
	}
	return r
}

// execStatus runs `true` in an instance and returns 101 when the session
// was opened (and the command ran), or the refusal.
func execStatus(t *testing.T, c *Cluster, token, ns, inst string) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sc, closer, err := c.clientAs(token).Exec(ctx, ns, inst, client.ExecOptions{Cmd: []string{"true"}})
	if err != nil {
		var se *v1.StatusError
		if errors.As(err, &se) {
			return reply{Code: se.Status.Code, Msg: se.Status.Message}
		}
		return reply{Code: -1, Msg: err.Error()}
	}
	defer closer.Close()
	for {
		typ, p, err := sc.Read()
		if err != nil {
			return reply{Code: -1, Msg: "exec session: " + err.Error()}
		}
		if typ == stream.Exit {
			if code := stream.ParseExit(p); code != 0 {
				return reply{Code: -1, Msg: fmt.Sprintf("exec of true exited %d", code)}
			}
			return reply{Code: http.StatusSwitchingProtocols}
		}
		if typ == stream.Error {
			return reply{Code: -1, Msg: "exec error: " + string(p)}
		}
	}
}
