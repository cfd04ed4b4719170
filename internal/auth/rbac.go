package auth

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// Built-in role names.
const (
	RoleClusterAdmin = "cluster-admin"
	RoleAdmin        = "admin"
	RoleDeveloper    = "developer"
	RoleViewer       = "viewer"
)

// namespacedResources are the resources that live in a namespace; the
// built-in namespace roles cover them.
var readVerbs = []string{"get", "list", "watch"}

// BuiltinRoles are the roles every cluster has. cluster-admin may do
// anything; the other three apply within the namespace of their binding.
var BuiltinRoles = map[string][]v1.Rule{
	RoleClusterAdmin: {{Verbs: []string{"*"}, Resources: []string{"*"}}},
	RoleAdmin: {
		{Verbs: []string{"*"}, Resources: []string{
			"apps", "apps/*", "revisions", "instances", "instances/logs", "instances/exec", "instances/metrics", "events",
			"secrets", "secrets/reveal", "images", "alertrules", "notifiers", "notifiers/*",
			"metrics",
		}},
		// An instance's status is what its node reports: the address the
		// load balancer and DNS send the App's traffic to. Whoever writes
		// it steers that traffic anywhere, past network isolation, so
		// only nodes (and cluster-admin) do, as only kubelets write a
		// Pod's status under Kubernetes' admin role.
		{Verbs: readVerbs, Resources: []string{"namespaces", "instances/status"}},
	},
	RoleDeveloper: {
		{Verbs: []string{"*"}, Resources: []string{"apps", "apps/*", "instances/logs", "instances/exec", "images", "alertrules", "notifiers", "notifiers/*"}},
		{Verbs: append([]string{"delete"}, readVerbs...), Resources: []string{"instances"}},
		{Verbs: []string{"get", "list", "watch", "create", "update", "delete"}, Resources: []string{"secrets"}},
		{Verbs: readVerbs, Resources: []string{"revisions", "events", "namespaces", "metrics", "instances/metrics"}},
	},
	RoleViewer: {
		// Not notifiers: their URLs and headers are credentials (a
		// Slack webhook's path, an Authorization header), and viewers
		// read no secrets.
		{Verbs: readVerbs, Resources: []string{"apps", "revisions", "instances", "events", "namespaces", "metrics", "alertrules"}},
		{Verbs: []string{"get"}, Resources: []string{"instances/logs", "apps/logs", "apps/metrics", "instances/metrics"}},
		{Verbs: []string{"pull", "get", "list"}, Resources: []string{"images"}},
	},
}

// clusterResources are cluster-scoped; only bindings in "*" grant them.
var clusterResources = map[string]bool{
	"nodes": true, "users": true, "tokens": true, "roles": true, "rolebindings": true,
	"namespaces": true, "audit": true,
}

// Authorizer decides requests with role-based access control, plus the
// node restriction for agent credentials. Bindings and roles are read from
// the store and cached for CacheTTL.
type Authorizer struct {
	Store    *store.Store
	CacheTTL time.Duration

	mu       sync.Mutex
	loaded   time.Time
	bindings []*v1.RoleBinding
	roles    map[string][]v1.Rule
}

// Authorize returns nil if id may do a, and an error wrapping
// v1.ErrForbidden that names the missing permission otherwise.
func (z *Authorizer) Authorize(ctx context.Context, id *Identity, a Attributes) error {
	if id == nil || id == Anonymous {
		return fmt.Errorf("%w: log in first (gantry login) or pass a token", v1.ErrUnauthorized)
	}
	if id.Node != "" {
		return authorizeNode(id, a)
	}
	bindings, roles, err := z.load(ctx)
	if err != nil {
		return err
	}
	for _, b := range bindings {
		if b.Spec.User != id.User {
			continue
		}
		if b.Spec.Namespace != "*" {
			if a.Namespace != b.Spec.Namespace {
				// Reading the namespace object itself is part of
				// working in it.
				if !(a.Resource == "namespaces" && a.Name == b.Spec.Namespace && slices.Contains(readVerbs, a.Verb)) {
					continue
				}
			} else if clusterResources[a.Resource] && a.Resource != "namespaces" {
				continue
			}
		}
		rules, ok := roles[b.Spec.Role]
		if !ok {
			continue
		}
		if allows(rules, a) {
			return nil
		}
	}
	return Forbidden(id, a, "no role binding grants it")
}

// allows reports whether rules allow a. "apply" (create or replace) is
// allowed where both create and update are, unless a rule names it.
func allows(rules []v1.Rule, a Attributes) bool {
	if a.Verb == "apply" && !allows1(rules, a) {
		c, u := a, a
		c.Verb, u.Verb = "create", "update"
		return allows1(rules, c) && allows1(rules, u)
	}
	return allows1(rules, a)
}

func allows1(rules []v1.Rule, a Attributes) bool {
	res := a.Resource
	if a.Subresource != "" {
		res += "/" + a.Subresource
	}
	for _, r := range rules {
		if !matchAny(r.Verbs, a.Verb) {
			continue
		}
		for _, want := range r.Resources {
			if want == "*" || want == res {
				return true
			}
			if base, ok := strings.CutSuffix(want, "/*"); ok && a.Subresource != "" && base == a.Resource {
				return true
			}
		}
	}
	return false
}

func matchAny(list []string, v string) bool {
	return slices.Contains(list, "*") || slices.Contains(list, v)
}

// RulesFor returns the rules of a built-in or custom role.
func (z *Authorizer) RulesFor(ctx context.Context, role string) ([]v1.Rule, bool, error) {
	_, roles, err := z.load(ctx)
	if err != nil {
		return nil, false, err
	}
	r, ok := roles[role]
	return r, ok, nil
}

func (z *Authorizer) load(ctx context.Context) ([]*v1.RoleBinding, map[string][]v1.Rule, error) {
	ttl := z.CacheTTL
	if ttl == 0 {
		ttl = time.Second
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if time.Since(z.loaded) < ttl && z.roles != nil {
		return z.bindings, z.roles, nil
	}
	bindings, _, err := store.List[*v1.RoleBinding](ctx, z.Store, store.ListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("load role bindings: %w", err)
	}
	custom, _, err := store.List[*v1.Role](ctx, z.Store, store.ListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("load roles: %w", err)
	}
	roles := make(map[string][]v1.Rule, len(BuiltinRoles)+len(custom))
	for _, r := range custom {
		roles[r.Metadata.Name] = r.Spec.Rules
	}
	for name, rules := range BuiltinRoles {
		roles[name] = rules // built-ins cannot be shadowed
	}
	z.bindings, z.roles, z.loaded = bindings, roles, time.Now()
	return bindings, roles, nil
}

// Invalidate drops the cache so that the next request sees new bindings.
func (z *Authorizer) Invalidate() {
	z.mu.Lock()
	z.loaded = time.Time{}
	z.mu.Unlock()
}

// authorizeNode implements the node restriction: an agent's credential may
// act only for its own node. Which instance is bound to which node is
// checked by the API server against the stored object (NodeScoped); here
// we only decide the resource and verb.
func authorizeNode(id *Identity, a Attributes) error {
	ok := false
	switch a.Resource {
	case "nodes":
		ok = a.Name == id.Node && (a.Verb != "delete" && a.Verb != "list" && a.Verb != "watch")
	case "instances":
		switch a.Subresource {
		case "":
			ok = slices.Contains([]string{"get", "list", "watch", "delete"}, a.Verb)
		case "status":
			ok = a.Verb == "update" || a.Verb == "get"
		}
	case "events":
		ok = a.Verb == "create"
	case "secrets":
		// Only secrets mounted on the node's instances; the server
		// checks the binding.
		ok = a.Verb == "get" && a.Subresource == "reveal"
	case "images":
		ok = a.Verb == "pull"
	}
	if !ok {
		return Forbidden(id, a, "node credentials act only for their own node's instances")
	}
	return nil
}
