package v1

import (
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"
)

// Version is the API version carried in every object's apiVersion field.
const Version = "v1"

// TypeMeta names an object's kind and API version.
type TypeMeta struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion,omitempty"`
}

// ObjectMeta is the metadata every object has.
type ObjectMeta struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Annotations hold free-form notes that tools attach; Gantry uses
	// "gantry.dev/change-cause" on Apps.
	Annotations map[string]string `json:"annotations,omitempty"`
	// UID is assigned at creation and never changes; a deleted and
	// re-created object gets a new one.
	UID string `json:"uid,omitempty"`
	// Revision is the store revision at which the object was last written.
	// Passing it back on update makes the write conditional on nobody
	// having changed the object since (409 otherwise). Zero means
	// "unconditional" where the API allows it.
	Revision int64     `json:"revision,omitempty"`
	Created  time.Time `json:"created,omitzero"`
	// Deleting is set when deletion has begun but cleanup (draining,
	// stopping containers) is still running.
	Deleting *time.Time `json:"deleting,omitempty"`
}

// Key returns "namespace/name", or "name" for cluster-scoped objects.
func (m *ObjectMeta) Key() string {
	if m.Namespace == "" {
		return m.Name
	}
	return m.Namespace + "/" + m.Name
}

// Object is implemented by every API resource.
type Object interface {
	GetMeta() *ObjectMeta
	GetType() *TypeMeta
}

// GetType returns the object's type metadata.
func (t *TypeMeta) GetType() *TypeMeta { return t }

// KindInfo describes one resource kind for routing, storage and the CLI.
type KindInfo struct {
	Kind       string   // "App"
	Plural     string   // "apps": the URL path segment and the store prefix
	Aliases    []string // other names the CLI accepts ("app", "a")
	Namespaced bool
	// Immutable kinds can be created and deleted but never updated.
	Immutable bool
	New       func() Object
}

var kinds = map[string]*KindInfo{}
var kindAliases = map[string]*KindInfo{}

// Register adds a kind to the registry. It is called from init functions in
// this package; registering the same kind twice panics.
func Register(k *KindInfo) {
	if _, dup := kinds[k.Kind]; dup {
		panic("v1: kind registered twice: " + k.Kind)
	}
	kinds[k.Kind] = k
	for _, n := range append([]string{k.Plural, strings.ToLower(k.Kind)}, k.Aliases...) {
		kindAliases[n] = k
	}
}

// LookupKind finds a kind by its Kind name ("App"), plural ("apps"),
// singular ("app") or alias.
func LookupKind(name string) (*KindInfo, bool) {
	if k, ok := kinds[name]; ok {
		return k, true
	}
	k, ok := kindAliases[strings.ToLower(name)]
	return k, ok
}

// Kinds returns every registered kind sorted by Kind name.
func Kinds() []*KindInfo {
	out := make([]*KindInfo, 0, len(kinds))
	for _, k := range kinds {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out
}

// NewObject returns a zero object of the kind with its TypeMeta filled in.
func NewObject(kind string) (Object, error) {
	k, ok := LookupKind(kind)
	if !ok {
		return nil, fmt.Errorf("unknown kind %q", kind)
	}
	o := k.New()
	*o.GetType() = TypeMeta{Kind: k.Kind, APIVersion: Version}
	return o, nil
}

// KindOf returns the registered kind of an object, from its TypeMeta.
func KindOf(o Object) (*KindInfo, error) {
	t := o.GetType()
	k, ok := LookupKind(t.Kind)
	if !ok {
		return nil, fmt.Errorf("unknown kind %q", t.Kind)
	}
	return k, nil
}

// CloneLabels returns a copy of a label map (nil stays nil).
func CloneLabels(l map[string]string) map[string]string { return maps.Clone(l) }

// Well-known labels Gantry sets on the objects it creates.
const (
	LabelApp      = "gantry.dev/app"
	LabelRevision = "gantry.dev/revision"
	LabelNode     = "gantry.dev/node"
	// LabelAppUID is the UID of the App an instance was made for: an App
	// created again under the same name does not adopt its namesake's.
	LabelAppUID = "gantry.dev/app-uid"

	// LabelNodeRestrictionPrefix starts the Node labels that only a
	// cluster admin may set: a node's own credential can neither set nor
	// change nor remove them (as Kubernetes' NodeRestriction keeps
	// node-restriction.kubernetes.io/ from kubelets), so a constraint on
	// one trusts the admin, not the node.
	LabelNodeRestrictionPrefix = "node-restriction.gantry.dev/"

	// AnnotationChangeCause records why a revision was made.
	AnnotationChangeCause = "gantry.dev/change-cause"
)
