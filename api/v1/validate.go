package v1

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FieldError is one problem with one field of an object.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e FieldError) String() string { return e.Field + ": " + e.Message }

// FieldErrors is every problem found in an object. It is an error when
// non-empty.
type FieldErrors []FieldError

func (l FieldErrors) Error() string {
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = e.String()
	}
	return strings.Join(parts, "; ")
}

func (l *FieldErrors) add(field, format string, args ...any) {
	*l = append(*l, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Is makes field errors an ErrInvalid for errors.Is, as StatusFor answers
// them.
func (l FieldErrors) Is(target error) bool { return target == ErrInvalid }

// OrNil returns nil when there are no errors, so the result can be
// returned as an error without the typed-nil trap.
func (l FieldErrors) OrNil() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

var (
	dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	envName      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	labelKey     = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	labelValue   = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$`)
)

// MaxAppName leaves room in a DNS label for an instance suffix.
const MaxAppName = 52

// ValidateName checks a DNS-1123 label of at most max characters.
func ValidateName(name string, max int) string {
	switch {
	case name == "":
		return "is required"
	case len(name) > max:
		return fmt.Sprintf("must be at most %d characters (got %d)", max, len(name))
	case !dns1123Label.MatchString(name):
		return "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit"
	}
	return ""
}

// UnroutablePathChar reports whether c cannot stand in a route's path:
// requests are routed by their path alone, which holds no query (?),
// fragment (#), space or control character.
func UnroutablePathChar(c rune) bool { return c == '?' || c == '#' || c <= ' ' || c == 0x7f }

// CanonicalDomain is a domain as host names are matched against it:
// lower case, without surrounding space or the root's dot.
func CanonicalDomain(d string) string {
	return strings.Trim(strings.ToLower(strings.TrimSpace(d)), ".")
}

// ValidateHostname checks a DNS name such as app.example.com.
func ValidateHostname(h string) string {
	if h == "" {
		return "is required"
	}
	if len(h) > 253 {
		return "must be at most 253 characters"
	}
	if h == "*" {
		return `a bare "*" matches no host name: use "*.example.com" for every name under example.com`
	}
	for i, l := range strings.Split(h, ".") {
		if i == 0 && l == "*" {
			continue
		}
		if l == "" || len(l) > 63 || !dns1123Label.MatchString(l) {
			return fmt.Sprintf("%q is not a valid host name: use lower-case labels separated by dots", h)
		}
	}
	return ""
}

// Validate checks an object of any registered kind and returns every
// problem found.
func Validate(o Object) FieldErrors {
	var errs FieldErrors
	k, err := KindOf(o)
	if err != nil {
		errs.add("kind", "%v", err)
		return errs
	}
	validateMeta(&errs, k, o.GetMeta())
	switch o := o.(type) {
	case *App:
		validateApp(&errs, o)
	case *Namespace:
		validateNamespace(&errs, o)
	case *Node, *Instance, *Revision, *Event:
		// Written by Gantry itself; metadata checks are enough.
	default:
		if v, ok := o.(interface{ Validate() FieldErrors }); ok {
			errs = append(errs, v.Validate()...)
		}
	}
	return errs
}

func validateMeta(errs *FieldErrors, k *KindInfo, m *ObjectMeta) {
	max := 63
	if k.Kind == "App" {
		max = MaxAppName
	}
	if k.Kind == "Event" {
		// Event names are dotted: object.time.random.
		if msg := ValidateHostname(m.Name); msg != "" {
			errs.add("metadata.name", "%s", msg)
		}
	} else if msg := ValidateName(m.Name, max); msg != "" {
		errs.add("metadata.name", "%s", msg)
	}
	if k.Namespaced {
		if msg := ValidateName(m.Namespace, 63); msg != "" {
			errs.add("metadata.namespace", "%s", msg)
		}
	} else if m.Namespace != "" {
		errs.add("metadata.namespace", "%s is cluster-scoped and takes no namespace", k.Kind)
	}
	*errs = append(*errs, ValidateLabels("metadata.labels", m.Labels)...)
}

// ValidateLabels checks the keys and values of a label map; field names
// the map in the errors ("metadata.labels").
func ValidateLabels(field string, labels map[string]string) FieldErrors {
	var errs FieldErrors
	for _, key := range slices.Sorted(maps.Keys(labels)) {
		v := labels[key]
		if len(key) > 253 || !labelKey.MatchString(key) {
			errs.add(field+"["+key+"]", "invalid label key: use letters, digits, '-', '_', '.', with an optional DNS prefix and '/'")
		}
		if len(v) > 63 || !labelValue.MatchString(v) {
			errs.add(field+"["+key+"]", "invalid label value %q: at most 63 letters, digits, '-', '_' or '.'", v)
		}
	}
	return errs
}

func validateNamespace(errs *FieldErrors, n *Namespace) {
	if q := n.Spec.Quota; q != nil {
		if q.CPU < 0 || q.Memory < 0 || q.Instances < 0 || q.Apps < 0 || q.Secrets < 0 || q.Storage < 0 {
			errs.add("spec.quota", "quota values must not be negative")
		}
	}
	if p := n.Spec.Policy; p != nil {
		for i, c := range p.AllowCapabilities {
			switch {
			case CapabilityName(c) == "ALL":
				errs.add(fmt.Sprintf("spec.policy.allowCapabilities[%d]", i), "ALL is allowed by allowPrivileged, not here")
			case !isCapability(c):
				errs.add(fmt.Sprintf("spec.policy.allowCapabilities[%d]", i), "%q is not a Linux capability (such as NET_ADMIN or SYS_PTRACE)", c)
			}
		}
	}
	if l := n.Spec.Limits; l != nil {
		if l.MaxCPU > 0 && l.DefaultCPU > l.MaxCPU {
			errs.add("spec.limits.defaultCPU", "must not exceed maxCPU (%s)", l.MaxCPU)
		}
		if l.MaxMemory > 0 && l.DefaultMemory > l.MaxMemory {
			errs.add("spec.limits.defaultMemory", "must not exceed maxMemory (%s)", l.MaxMemory)
		}
		// Limits no App could meet: every App would be refused with
		// errors on fields its author never wrote.
		for _, m := range []struct {
			field string
			v     Bytes
		}{{"spec.limits.defaultMemory", l.DefaultMemory}, {"spec.limits.maxMemory", l.MaxMemory}} {
			if m.v > 0 && m.v < minMemory {
				errs.add(m.field, "must be at least %s, the least a container gets (got %s)", minMemory, m.v)
			}
		}
	}
}

const maxReplicas = 10000

// minMemory is the least memory a container may have.
const minMemory = Bytes(4 << 20)

// MaxPids bounds resources.pids: a container may not lift its process
// limit past what keeps a fork bomb from exhausting the node's PIDs
// (pid_max is 32768 on many kernels, 4194304 at most).
const MaxPids = 32768

// NodePortMin and NodePortMax bound the nodePort of an exposed port: the
// load balancer's default node port range.
const (
	NodePortMin = 30000
	NodePortMax = 32767
)

// MinProbePeriod is the shortest period a health check may have. It is
// below Kubernetes' one second so that readiness can follow an app within
// a fraction of a second, and far above what would keep a node busy.
const MinProbePeriod = 100 * time.Millisecond

// maxRevisionHistory bounds revisionHistoryLimit: every kept revision is a
// copy of the template in etcd.
const maxRevisionHistory = 1000

func validateApp(errs *FieldErrors, a *App) {
	s := &a.Spec
	validateTemplate(errs, "spec", &s.Template)
	if s.Replicas != nil && (*s.Replicas < 0 || *s.Replicas > maxReplicas) {
		errs.add("spec.replicas", "must be between 0 and %d", maxReplicas)
	}
	if n := s.RevisionHistoryLimit; n != nil && (*n < 0 || *n > maxRevisionHistory) {
		errs.add("spec.revisionHistoryLimit", "must be between 0 and %d", maxRevisionHistory)
	}
	st := s.Strategy
	if st.MaxSurge != nil && st.MaxUnavailable != nil && st.MaxSurge.Value == 0 && st.MaxUnavailable.Value == 0 {
		errs.add("spec.strategy", "maxSurge and maxUnavailable cannot both be 0: the rollout could never make progress")
	}
	for _, f := range []struct {
		name string
		v    *IntOrPercent
	}{{"maxSurge", st.MaxSurge}, {"maxUnavailable", st.MaxUnavailable}} {
		if f.v != nil && f.v.IsPercent && f.v.Value > 100 {
			errs.add("spec.strategy."+f.name, "percentage must be at most 100%%")
		}
	}
	if st.ProgressDeadline != 0 && st.ProgressDeadline < Duration(time.Second) {
		errs.add("spec.strategy.progressDeadline", "must be at least 1s (the default is %s): a shorter one would roll back every rollout before an instance could start", DefaultProgressDeadline)
	}
	if st.DrainDelay != nil && (*st.DrainDelay < 0 || st.DrainDelay.D().Hours() > 1) {
		errs.add("spec.strategy.drainDelay", "must be between 0 and 1h")
	}
	if deadline := cmp.Or(st.ProgressDeadline, DefaultProgressDeadline); st.MinReady < 0 || st.MinReady >= deadline {
		errs.add("spec.strategy.minReady", "must be at least 0 and shorter than strategy.progressDeadline (%s): every rollout would be rolled back before its first new instance counted as available", deadline)
	}
	httpPorts := map[string]bool{}
	for _, p := range s.Ports {
		if p.Protocol == ProtocolHTTP || p.Protocol == "" {
			httpPorts[p.Name] = true
		}
	}
	switch s.LoadBalancing {
	case "", BalanceRoundRobin, BalanceLeastRequests:
	default:
		errs.add("spec.loadBalancing", "must be %s or %s (got %q)", BalanceRoundRobin, BalanceLeastRequests, s.LoadBalancing)
	}
	seenRoute := map[string]int{}
	hostTLS := map[string]int{} // host → the first route of it that sets tls
	for i, r := range s.Routes {
		f := fmt.Sprintf("spec.routes[%d]", i)
		if msg := ValidateHostname(r.Host); msg != "" {
			errs.add(f+".host", "%s", msg)
		}
		if r.Path != "" && (!strings.HasPrefix(r.Path, "/") || path.Clean(r.Path) != strings.TrimSuffix(r.Path, "/") && r.Path != "/") {
			errs.add(f+".path", "must be a clean absolute path such as /api")
		} else if i := strings.IndexFunc(r.Path, UnroutablePathChar); i >= 0 {
			errs.add(f+".path", "must be a path alone, without a query (?), a fragment (#), spaces or control characters: requests are routed by their path (found %q)", r.Path[i:i+1])
		}
		if r.Port != "" && !httpPorts[r.Port] {
			errs.add(f+".port", "no http port named %q in spec.ports", r.Port)
		}
		if r.Port == "" && len(httpPorts) == 0 {
			errs.add(f, "a route needs an http port in spec.ports")
		}
		if r.AllowHTTP && r.TLS == "" {
			errs.add(f+".allowHTTP", "applies to routes with tls only: a route without tls is served over plain HTTP anyway")
		}
		key := strings.ToLower(r.Host) + RoutePath(r.Path)
		if j, dup := seenRoute[key]; dup {
			errs.add(f, "duplicates spec.routes[%d] (%s)", j, key)
		}
		seenRoute[key] = i
		if r.TLS != "" {
			h := strings.ToLower(r.Host)
			if j, ok := hostTLS[h]; ok && s.Routes[j].TLS != r.TLS {
				errs.add(f+".tls", "is %q but spec.routes[%d] serves %s with tls %q: a host has one certificate, so its routes must agree", r.TLS, j, h, s.Routes[j].TLS)
			} else if !ok {
				hostTLS[h] = i
			}
		}
	}
	if as := s.Autoscale; as != nil {
		if as.Min < 1 {
			errs.add("spec.autoscale.min", "must be at least 1")
		}
		if as.Max < as.Min {
			errs.add("spec.autoscale.max", "must be at least min (%d)", as.Min)
		}
		if as.Max > maxReplicas {
			errs.add("spec.autoscale.max", "must be at most %d", maxReplicas)
		}
		if as.TargetCPUPercent == 0 && as.TargetRequestsPerSecond == 0 {
			errs.add("spec.autoscale", "set targetCPUPercent or targetRequestsPerSecond")
		}
		if as.TargetCPUPercent < 0 || as.TargetCPUPercent > 1000 {
			errs.add("spec.autoscale.targetCPUPercent", "must be between 1 and 1000")
		}
		if as.TargetRequestsPerSecond < 0 {
			errs.add("spec.autoscale.targetRequestsPerSecond", "must not be negative")
		}
	}
	if np := s.Network; np != nil {
		for i, ns := range np.AllowFrom {
			if msg := ValidateName(ns, 63); msg != "" && ns != "*" {
				errs.add(fmt.Sprintf("spec.network.allowFrom[%d]", i), "%s", msg)
			}
		}
	}
}

// RoutePath is a route path as routing compares it: "/" or "/a/b", so
// that "", "/", "//" are one route and "/api", "/api/" another.
func RoutePath(p string) string {
	p = strings.TrimRight(p, "/")
	if p == "" {
		return "/"
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return p
}

func validateTemplate(errs *FieldErrors, f string, t *Template) {
	if t.Image == "" {
		errs.add(f+".image", "is required")
	} else if msg := ValidateImageRef(t.Image); msg != "" {
		errs.add(f+".image", "%s", msg)
	}
	seenEnv := map[string]bool{}
	for i, e := range t.Env {
		ef := fmt.Sprintf("%s.env[%d]", f, i)
		if !envName.MatchString(e.Name) {
			errs.add(ef+".name", "%q is not a valid variable name (letters, digits, '_'; not starting with a digit)", e.Name)
		}
		if seenEnv[e.Name] {
			errs.add(ef+".name", "%q is set twice", e.Name)
		}
		seenEnv[e.Name] = true
		if strings.IndexByte(e.Value, 0) >= 0 {
			errs.add(ef+".value", "must not hold a NUL byte: the environment is C strings (mount binary data as a file)")
		} else if n := len(e.Name) + 1 + len(e.Value); n > MaxArgLen {
			errs.add(ef+".value", "NAME=value is %d bytes; the kernel takes at most %d per variable (mount larger data as a file)", n, MaxArgLen)
		}
		if e.Secret != nil {
			if e.Value != "" {
				errs.add(ef, "set value or secret, not both")
			}
			if msg := ValidateName(e.Secret.Name, 63); msg != "" {
				errs.add(ef+".secret.name", "%s", msg)
			}
			if e.Secret.Key == "" {
				errs.add(ef+".secret.key", "is required")
			}
		}
	}
	validateArgv(errs, f+".command", t.Command)
	validateArgv(errs, f+".args", t.Args)
	if t.WorkingDir != "" && !path.IsAbs(t.WorkingDir) {
		errs.add(f+".workingDir", "must be an absolute path (got %q)", t.WorkingDir)
	}
	for i, m := range t.Files {
		mf := fmt.Sprintf("%s.files[%d]", f, i)
		if !path.IsAbs(m.Path) || path.Clean(m.Path) != m.Path || m.Path == "/" {
			errs.add(mf+".path", "must be a clean absolute path other than /")
		} else if msg := reservedFilePath(m.Path); msg != "" {
			errs.add(mf+".path", "%s", msg)
		} else {
			for j, o := range t.Files[:i] {
				switch {
				case o.Path == m.Path:
					errs.add(mf+".path", "%s is also files[%d]'s path: one mount would hide the other", m.Path, j)
				case strings.HasPrefix(m.Path, o.Path+"/"), strings.HasPrefix(o.Path, m.Path+"/"):
					errs.add(mf+".path", "%s and files[%d]'s %s lie one inside the other: each is a read-only mount of its own, which the other cannot be made in", m.Path, j, o.Path)
				}
			}
		}
		if msg := ValidateName(m.Secret, 63); msg != "" {
			errs.add(mf+".secret", "%s", msg)
		}
	}
	r := t.Resources
	if r.CPU < 0 {
		errs.add(f+".resources.cpu", "must not be negative")
	}
	if r.Memory < 0 {
		errs.add(f+".resources.memory", "must not be negative")
	} else if r.Memory > 0 && r.Memory < minMemory {
		errs.add(f+".resources.memory", "must be at least %s (got %s)", minMemory, r.Memory)
	}
	if r.Pids < 0 || r.Pids > MaxPids {
		errs.add(f+".resources.pids", "must be between 0 (the default, %d) and %d", DefaultPids, MaxPids)
	}
	if l := r.Limits; l != nil {
		if l.Memory > 0 && l.Memory < r.Memory {
			errs.add(f+".resources.limits.memory", "must be at least the memory request (%s)", r.Memory)
		}
		if l.CPU > 0 && l.CPU < r.CPU {
			errs.add(f+".resources.limits.cpu", "must be at least the cpu request (%s)", r.CPU)
		}
	}
	names := map[string]int{}
	ports := map[string]int{}
	hostPorts := map[string]int{}
	nodePorts := map[int]int{}
	for i, p := range t.Ports {
		pf := fmt.Sprintf("%s.ports[%d]", f, i)
		if p.Port < 1 || p.Port > 65535 {
			errs.add(pf+".port", "must be 1-65535")
		}
		if p.Name != "" {
			if msg := ValidateName(p.Name, 15); msg != "" {
				errs.add(pf+".name", "%s", msg)
			}
			if j, dup := names[p.Name]; dup {
				errs.add(pf+".name", "%q is already used by ports[%d]", p.Name, j)
			}
			names[p.Name] = i
		}
		switch p.Protocol {
		case "", ProtocolHTTP, ProtocolTCP, ProtocolUDP:
		default:
			errs.add(pf+".protocol", "must be http, tcp or udp (got %q)", p.Protocol)
		}
		key := strconv.Itoa(p.Port) + "/" + transport(p.Protocol)
		if j, dup := ports[key]; dup {
			errs.add(pf+".port", "%s is already declared by ports[%d]", key, j)
		}
		ports[key] = i
		if p.HostPort < 0 || p.HostPort > 65535 {
			errs.add(pf+".hostPort", "must be 1-65535")
		}
		if p.HostPort > 0 {
			key := strconv.Itoa(p.HostPort) + "/" + transport(p.Protocol)
			if j, dup := hostPorts[key]; dup {
				errs.add(pf+".hostPort", "%s is already published by ports[%d]; a node port can be published once", key, j)
			}
			hostPorts[key] = i
		}
		switch p.Expose {
		case "", "tcp":
		default:
			errs.add(pf+".expose", "must be tcp (got %q)", p.Expose)
		}
		// The load balancer's node port range, as in Kubernetes: below it
		// are Gantry's own ports (API, registry, DNS, agent metrics, 53 on
		// the bridge), and the load balancer refuses a node port outside
		// it.
		if p.NodePort != 0 && (p.NodePort < NodePortMin || p.NodePort > NodePortMax) {
			errs.add(pf+".nodePort", "must be %d-%d, or left out to have one chosen", NodePortMin, NodePortMax)
		}
		if p.NodePort != 0 && p.Expose == "" {
			errs.add(pf+".nodePort", "only applies with expose: tcp")
		}
		if p.NodePort != 0 {
			if j, dup := nodePorts[p.NodePort]; dup {
				errs.add(pf+".nodePort", "%d is already used by ports[%d]", p.NodePort, j)
			}
			nodePorts[p.NodePort] = i
		}
		// The load balancer knows an exposed port by its name.
		if p.Expose != "" && p.Name == "" && len(t.Ports) > 1 {
			errs.add(pf+".name", "is required for an exposed port when the App has several ports")
		}
		switch p.ProxyProtocol {
		case "":
		case ProxyProtocolV1, ProxyProtocolV2:
			if p.Expose == "" {
				errs.add(pf+".proxyProtocol", "only applies with expose: tcp")
			}
		default:
			errs.add(pf+".proxyProtocol", "must be v1 or v2 (got %q)", p.ProxyProtocol)
		}
		if p.Expose != "" && p.Protocol == ProtocolUDP {
			errs.add(pf+".expose", "applies to tcp and http ports only (the load balancer relays TCP)")
		}
	}
	validateProbe(errs, f+".health.readiness", t.Health.Readiness)
	validateProbe(errs, f+".health.liveness", t.Health.Liveness)
	validateProbe(errs, f+".health.startup", t.Health.Startup)
	for i, c := range t.Constraints {
		cf := fmt.Sprintf("%s.constraints[%d]", f, i)
		if c.Label == "" {
			errs.add(cf+".label", "is required")
		} else if len(c.Label) > 253 || !labelKey.MatchString(c.Label) {
			errs.add(cf+".label", "%q is not a label key: use letters, digits, '-', '_', '.', with an optional DNS prefix and '/'", c.Label)
		}
		// A value no node label can have would match nothing (or
		// everything, negated): refuse it, as the node's labels are.
		for j, v := range append([]string{c.Value}, c.Values...) {
			if len(v) > 63 || !labelValue.MatchString(v) {
				vf := cf + ".value"
				if j > 0 {
					vf = fmt.Sprintf("%s.values[%d]", cf, j-1)
				}
				errs.add(vf, "%q is not a label value: at most 63 letters, digits, '-', '_' or '.'", v)
			}
		}
		switch c.Op {
		case "", OpEqual, "==", OpNotEqual:
			if len(c.Values) > 0 {
				errs.add(cf+".values", "use value with op %q", c.Op)
			}
		case OpIn, OpNotIn:
			if len(c.Values) == 0 {
				errs.add(cf+".values", "op %q needs at least one value", c.Op)
			}
		case OpExists, OpNotExists:
			if c.Value != "" || len(c.Values) > 0 {
				errs.add(cf, "op %q takes no value", c.Op)
			}
		default:
			errs.add(cf+".op", "must be one of =, !=, in, notin, exists, !exists (got %q)", c.Op)
		}
	}
	switch t.Placement {
	case "", PlacementBinpack, PlacementSpread:
	default:
		errs.add(f+".placement", "must be binpack or spread (got %q)", t.Placement)
	}
	switch t.RestartPolicy {
	case "", RestartAlways, RestartOnFailure, RestartNever:
	default:
		errs.add(f+".restartPolicy", "must be always, on-failure or never (got %q)", t.RestartPolicy)
	}
	if g := t.StopGracePeriod; g != nil && (*g < 0 || g.D().Hours() > 1) {
		errs.add(f+".stopGracePeriod", "must be between 0 and 1h")
	}
	if sc := t.SecurityContext; sc != nil && sc.Capabilities != nil {
		for i, c := range sc.Capabilities.Add {
			if CapabilityName(c) != "ALL" && !isCapability(c) {
				errs.add(fmt.Sprintf("%s.securityContext.capabilities.add[%d]", f, i), "%q is not a Linux capability (such as NET_ADMIN, or ALL)", c)
			}
		}
		for i, c := range sc.Capabilities.Drop {
			if CapabilityName(c) != "ALL" && !isCapability(c) {
				errs.add(fmt.Sprintf("%s.securityContext.capabilities.drop[%d]", f, i), "%q is not a Linux capability (such as NET_RAW, or ALL)", c)
			}
		}
	}
	if sc := t.SecurityContext; sc != nil {
		// Linux IDs are 32-bit and runc refuses those past 2^31-1; a
		// larger one must not wrap around to root on its way down.
		if sc.RunAsUser != nil && (*sc.RunAsUser < 0 || *sc.RunAsUser > math.MaxInt32) {
			errs.add(f+".securityContext.runAsUser", "must be between 0 and %d", math.MaxInt32)
		}
		if sc.RunAsGroup != nil && (*sc.RunAsGroup < 0 || *sc.RunAsGroup > math.MaxInt32) {
			errs.add(f+".securityContext.runAsGroup", "must be between 0 and %d", math.MaxInt32)
		}
	}
}

func transport(proto string) string {
	if proto == ProtocolUDP {
		return "udp"
	}
	return "tcp"
}

// MaxArgLen is the longest argument or NAME=value environment string the
// kernel passes to a program (MAX_ARG_STRLEN, less its NUL).
const MaxArgLen = 128<<10 - 1

// validateArgv checks a command or its arguments (field f): strings the
// kernel can pass, and a program to run first when f is a command. A
// container given others exits at once, saying nothing of why.
func validateArgv(errs *FieldErrors, f string, argv []string) {
	if strings.HasSuffix(f, "command") && len(argv) > 0 && argv[0] == "" {
		errs.add(f+"[0]", "must name the program to run")
	}
	for i, a := range argv {
		switch {
		case strings.IndexByte(a, 0) >= 0:
			errs.add(fmt.Sprintf("%s[%d]", f, i), "must not hold a NUL byte: arguments are C strings")
		case len(a) > MaxArgLen:
			errs.add(fmt.Sprintf("%s[%d]", f, i), "is %d bytes; the kernel takes at most %d per argument", len(a), MaxArgLen)
		}
	}
}

// reservedFilePath says why a secret file cannot be mounted at p (clean
// and absolute), or "".
func reservedFilePath(p string) string {
	for _, d := range []string{"/proc", "/sys", "/dev"} {
		if p == d || strings.HasPrefix(p, d+"/") {
			return fmt.Sprintf("%s lies in %s, which the runtime mounts for the kernel: choose a path elsewhere", p, d)
		}
	}
	switch p {
	case "/etc/hosts", "/etc/hostname", "/etc/resolv.conf":
		return fmt.Sprintf("%s is written by Gantry for the instance's name and DNS: choose another path", p)
	}
	return ""
}

func validateProbe(errs *FieldErrors, f string, p *Probe) {
	if p == nil {
		return
	}
	n := 0
	if p.HTTP != nil {
		n++
		if p.HTTP.Port < 1 || p.HTTP.Port > 65535 {
			errs.add(f+".http.port", "must be 1-65535")
		}
		if p.HTTP.Path != "" && !strings.HasPrefix(p.HTTP.Path, "/") {
			errs.add(f+".http.path", "must start with /")
		} else if _, err := url.Parse("http://probe" + p.HTTP.Path); err != nil {
			// The agent asks for this URL: one that does not parse
			// fails every check, and the instance never passes it.
			errs.add(f+".http.path", "is not a URL path: %v (escape %% as %%25 and spaces as %%20)", errors.Unwrap(err))
		}
	}
	if p.TCP != nil {
		n++
		if p.TCP.Port < 1 || p.TCP.Port > 65535 {
			errs.add(f+".tcp.port", "must be 1-65535")
		}
	}
	if p.Exec != nil {
		n++
		if len(p.Exec.Command) == 0 {
			errs.add(f+".exec.command", "is required")
		}
		validateArgv(errs, f+".exec.command", p.Exec.Command)
	}
	if n != 1 {
		errs.add(f, "set exactly one of http, tcp or exec (got %d)", n)
	}
	if p.Period < 0 || p.Timeout < 0 || p.InitialDelay < 0 {
		errs.add(f, "period, timeout and initialDelay must not be negative")
	}
	if p.Period > 0 && p.Period.D() < MinProbePeriod {
		// A check every nanosecond would keep the agent running exec
		// processes and connections back to back for one App.
		errs.add(f+".period", "must be at least %s (got %s)", MinProbePeriod, p.Period.D())
	}
	if p.FailureThreshold < 0 || p.SuccessThreshold < 0 {
		errs.add(f, "thresholds must not be negative")
	}
}

// ValidateImageRef checks the shape of an image reference: [host[:port]/]path[:tag][@digest].
func ValidateImageRef(ref string) string {
	if strings.ContainsAny(ref, " \t\n") {
		return "must not contain spaces"
	}
	name, digest, hasDigest := strings.Cut(ref, "@")
	if hasDigest {
		algo, hex, ok := strings.Cut(digest, ":")
		if !ok || algo != "sha256" || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
			return fmt.Sprintf("digest %q must be sha256: followed by 64 hex digits", digest)
		}
	}
	tag := ""
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, tag = name[:i], name[i+1:]
		if tag == "" || len(tag) > 128 || !tagPattern.MatchString(tag) {
			return fmt.Sprintf("tag %q is invalid", tag)
		}
	}
	parts := strings.Split(name, "/")
	start := 0
	if len(parts) > 1 && (strings.ContainsAny(parts[0], ".:") || parts[0] == "localhost") {
		if _, _, err := net.SplitHostPort(parts[0]); err != nil && strings.Contains(parts[0], ":") {
			return fmt.Sprintf("registry host %q is invalid", parts[0])
		}
		start = 1
	}
	for _, p := range parts[start:] {
		if !repoComponent.MatchString(p) {
			return fmt.Sprintf("%q is not a valid image name: use lower-case letters, digits and separators (., _, -), as in team/app:v1", ref)
		}
	}
	return ""
}

var (
	repoComponent = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$`)
	tagPattern    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
)

// LogQuery is what a logs request asks for, as the node that has the log
// reads it and the API server checks it before it answers.
type LogQuery struct {
	Follow bool
	Tail   int       // the last lines of each log; 0: every line
	Since  time.Time // zero: from the start
}

// ParseLogQuery reads follow, tail, and since or sinceSeconds (counted
// back from now), and says which is wrong and what to send.
func ParseLogQuery(q url.Values, now time.Time) (LogQuery, error) {
	var lq LogQuery
	var err error
	if lq.Follow, err = LogFollow(q); err != nil {
		return LogQuery{}, err
	}
	if v := q.Get("tail"); v != "" {
		if lq.Tail, err = strconv.Atoi(v); err != nil || lq.Tail < 0 {
			return LogQuery{}, fmt.Errorf("tail=%q: send the number of last lines to return (0 or more)", v)
		}
	}
	if lq.Since, err = LogSince(q, now); err != nil {
		return LogQuery{}, err
	}
	return lq, nil
}

// WidenSinceSeconds sets the sinceSeconds of a logs request q asked
// again elapsed after its first ask to cover that time too (rounded up
// to a second), so that the lines written between the two asks are not
// lost; a q without sinceSeconds is left as it is.
func WidenSinceSeconds(q url.Values, elapsed time.Duration) {
	if n, err := strconv.ParseInt(q.Get("sinceSeconds"), 10, 64); err == nil {
		q.Set("sinceSeconds", strconv.FormatInt(n+int64(math.Ceil(elapsed.Seconds())), 10))
	}
}

// LogSince reads the start of a logs request: since, an RFC 3339 time,
// or sinceSeconds, a whole number of seconds back from now, the clock of
// whoever answers (the node that has the log): a client whose clock is
// off asks for the lines it means. The zero time when neither is given.
func LogSince(q url.Values, now time.Time) (time.Time, error) {
	since, secs := q.Get("since"), q.Get("sinceSeconds")
	switch {
	case since != "" && secs != "":
		return time.Time{}, fmt.Errorf("give since or sinceSeconds, not both")
	case since != "":
		t, err := time.Parse(time.RFC3339Nano, since)
		if err != nil {
			return time.Time{}, fmt.Errorf("since=%q: send an RFC 3339 time, such as 2025-01-02T15:04:05Z", since)
		}
		return t, nil
	case secs != "":
		n, err := strconv.ParseInt(secs, 10, 64)
		if err != nil || n < 0 || n > math.MaxInt64/int64(time.Second) {
			return time.Time{}, fmt.Errorf("sinceSeconds=%q: send a whole number of seconds back from now (0 or more)", secs)
		}
		return now.Add(-time.Duration(n) * time.Second), nil
	}
	return time.Time{}, nil
}

// LogFollow reads follow of a logs request (QueryBool).
func LogFollow(q url.Values) (bool, error) { return QueryBool(q, "follow") }

// QueryBool reads a yes-or-no query parameter: true or false as
// strconv.ParseBool takes them (1, t, TRUE, ...), false when not given
// or empty; any other value is an error naming it, so that watch=yes is
// not quietly a list, nor force=1 a graceful delete.
func QueryBool(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q: send true or false", name, v)
	}
	return b, nil
}
