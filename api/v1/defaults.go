package v1

import (
	"strings"
	"time"
)

// Cluster-wide defaults for fields a manifest leaves out. Namespace limit
// defaults (NamespaceSpec.Limits) take precedence over the resource ones.
const (
	DefaultNamespace        = "default"
	DefaultCPU              = CPU(50)
	DefaultMemory           = Bytes(64 << 20)
	DefaultPids             = 1024
	DefaultProgressDeadline = Duration(120 * time.Second)
	DefaultDrainDelay       = Duration(2 * time.Second)
	DefaultStopGracePeriod  = Duration(10 * time.Second)
	// DefaultRevisionHistoryLimit is how many earlier revisions an App
	// keeps, as Kubernetes keeps old ReplicaSets.
	DefaultRevisionHistoryLimit = 10
	// LibraryNamespace holds the registry's base images, which every
	// authenticated user may pull.
	LibraryNamespace = "library"
)

// DefaultMaxSurge and DefaultMaxUnavailable are the rolling update
// defaults: one extra instance at a time per four, none taken away first.
var (
	DefaultMaxSurge       = IntOrPercent{Value: 25, IsPercent: true}
	DefaultMaxUnavailable = IntOrPercent{Value: 0}
)

// SetDefaults fills in the defaults of any registered kind. It is
// idempotent.
func SetDefaults(o Object) {
	t := o.GetType()
	if k, ok := LookupKind(t.Kind); ok {
		t.Kind = k.Kind
		if k.Namespaced && o.GetMeta().Namespace == "" {
			o.GetMeta().Namespace = DefaultNamespace
		}
	}
	if t.APIVersion == "" {
		t.APIVersion = Version
	}
	if a, ok := o.(*App); ok {
		defaultApp(a)
	}
}

func defaultApp(a *App) {
	s := &a.Spec
	defaultTemplate(&s.Template)
	if s.Strategy.MaxSurge == nil {
		v := DefaultMaxSurge
		s.Strategy.MaxSurge = &v
	}
	if s.Strategy.MaxUnavailable == nil {
		v := DefaultMaxUnavailable
		if s.Strategy.MaxSurge.Value == 0 {
			v = IntOrPercent{Value: 1}
		}
		s.Strategy.MaxUnavailable = &v
	}
	if s.Strategy.ProgressDeadline == 0 {
		s.Strategy.ProgressDeadline = DefaultProgressDeadline
	}
	if s.Strategy.DrainDelay == nil {
		d := DefaultDrainDelay
		s.Strategy.DrainDelay = &d
	}
	if s.RevisionHistoryLimit == nil {
		n := int32(DefaultRevisionHistoryLimit)
		s.RevisionHistoryLimit = &n
	}
	for i := range s.Routes {
		if s.Routes[i].Path == "" {
			s.Routes[i].Path = "/"
		}
		s.Routes[i].Host = strings.ToLower(s.Routes[i].Host)
	}
}

func defaultTemplate(t *Template) {
	if t.Resources.CPU == 0 {
		t.Resources.CPU = DefaultCPU
	}
	if t.Resources.Memory == 0 {
		t.Resources.Memory = DefaultMemory
	}
	if t.Resources.Pids == 0 {
		t.Resources.Pids = DefaultPids
	}
	for i := range t.Ports {
		p := &t.Ports[i]
		if p.Protocol == "" {
			p.Protocol = ProtocolHTTP
		}
		if p.Name == "" && len(t.Ports) == 1 {
			p.Name = p.Protocol
			if p.Name == ProtocolUDP || p.Name == ProtocolTCP {
				p.Name = "port"
			}
		}
	}
	defaultProbe(t.Health.Readiness, time.Second)
	defaultProbe(t.Health.Liveness, 5*time.Second)
	defaultProbe(t.Health.Startup, time.Second)
	if t.RestartPolicy == "" {
		t.RestartPolicy = RestartAlways
	}
	if t.Placement == "" {
		t.Placement = PlacementBinpack
	}
	if t.StopGracePeriod == nil {
		g := DefaultStopGracePeriod
		t.StopGracePeriod = &g
	}
}

func defaultProbe(p *Probe, period time.Duration) {
	if p == nil {
		return
	}
	if p.Period == 0 {
		p.Period = Duration(period)
	}
	if p.Timeout == 0 {
		p.Timeout = Duration(time.Second)
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = 3
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = 1
	}
	if p.HTTP != nil && p.HTTP.Path == "" {
		p.HTTP.Path = "/"
	}
}

// QualifyImage turns a bare image name into a reference to the cluster's
// registry: "hello:v1" in namespace team becomes "REGISTRY/team/hello:v1",
// and "library/busybox" becomes "REGISTRY/library/busybox". A reference
// that names a registry host is returned as it is.
func QualifyImage(ref, namespace, registry string) string {
	if registry == "" {
		return ref
	}
	first, _, hasSlash := strings.Cut(ref, "/")
	if hasSlash && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return ref
	}
	if !hasSlash {
		return registry + "/" + namespace + "/" + ref
	}
	return registry + "/" + ref
}
