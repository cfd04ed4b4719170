package v1

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// App is a set of identical instances run from one template, with the
// rollout, routing and scaling rules that apply to them.
type App struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     AppSpec    `json:"spec"`
	Status   AppStatus  `json:"status,omitzero"`
}

// GetMeta returns the App's metadata.
func (a *App) GetMeta() *ObjectMeta { return &a.Metadata }

// AppSpec is what the user declares. The fields of Template decide what an
// instance runs; a change to any of them makes a new Revision. The others
// (replicas, strategy, routes, autoscale, network) apply without one.
type AppSpec struct {
	Template `json:",inline"`

	// Replicas is how many instances should run. Nil means 1, or the
	// autoscaler's choice when Autoscale is set.
	Replicas  *int32     `json:"replicas,omitempty"`
	Strategy  Strategy   `json:"strategy,omitzero"`
	Routes    []Route    `json:"routes,omitempty"`
	Autoscale *Autoscale `json:"autoscale,omitempty"`
	// Paused stops the rollout controller from acting on template
	// changes until it is cleared (rollout pause / resume).
	Paused bool `json:"paused,omitempty"`
	// Network holds the App's network policy.
	Network *NetworkPolicy `json:"network,omitempty"`
	// LoadBalancing is how the load balancer spreads requests (and L4
	// connections) over the ready instances: BalanceRoundRobin (the
	// default) or BalanceLeastRequests.
	LoadBalancing string `json:"loadBalancing,omitempty"`
	// RevisionHistoryLimit is how many revisions before the current one
	// are kept for `rollout undo` (Kubernetes' field of the same name).
	// Older ones are deleted when a new revision is made; the revision an
	// automatic rollback returns to is always kept. Nil means
	// DefaultRevisionHistoryLimit.
	RevisionHistoryLimit *int32 `json:"revisionHistoryLimit,omitempty"`
}

// Load balancing policies for AppSpec.LoadBalancing.
const (
	BalanceRoundRobin    = "round-robin"
	BalanceLeastRequests = "least-requests"
)

// HistoryLimit is RevisionHistoryLimit, or its default when unset.
func (s *AppSpec) HistoryLimit() int {
	if s.RevisionHistoryLimit == nil {
		return DefaultRevisionHistoryLimit
	}
	return int(*s.RevisionHistoryLimit)
}

// Template is everything that determines what an instance runs and where.
type Template struct {
	Image   string   `json:"image"`
	Command []string `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
	Env     EnvList  `json:"env,omitempty"`
	// Files are secrets mounted as files on a tmpfs, read-only (0400).
	Files           []FileMount      `json:"files,omitempty"`
	WorkingDir      string           `json:"workingDir,omitempty"`
	Resources       Resources        `json:"resources,omitzero"`
	Ports           []Port           `json:"ports,omitempty"`
	Health          Health           `json:"health,omitzero"`
	Constraints     []Constraint     `json:"constraints,omitempty"`
	Placement       string           `json:"placement,omitempty"`
	RestartPolicy   string           `json:"restartPolicy,omitempty"`
	StopGracePeriod *Duration        `json:"stopGracePeriod,omitempty"`
	SecurityContext *SecurityContext `json:"securityContext,omitempty"`
	// RestartNonce forces a new revision with an unchanged template
	// ("rollout restart").
	RestartNonce string `json:"restartNonce,omitempty"`
}

// Hash returns a stable digest of the template; equal templates hash equal.
func (t *Template) Hash() string {
	b, err := json.Marshal(t)
	if err != nil {
		// Every field of Template marshals; failure is a programming error.
		panic(fmt.Sprintf("v1: marshal template: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// EnvVar is one environment variable, literal or read from a secret.
type EnvVar struct {
	Name   string     `json:"name"`
	Value  string     `json:"value,omitempty"`
	Secret *SecretRef `json:"secret,omitempty"`
}

// SecretRef points at one key of a Secret in the same namespace.
type SecretRef struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

// FileMount places a secret's key (or every key, when Key is empty, one
// file per key) under Path inside the container.
type FileMount struct {
	Path   string `json:"path"`
	Secret string `json:"secret"`
	Key    string `json:"key,omitempty"`
}

// EnvList is a list of environment variables. In manifests it may also be
// written as a map of name to value; YAMLToJSON quotes the map's values,
// so that they arrive here as the strings written, and a JSON number keeps
// its text below.
type EnvList []EnvVar

// UnmarshalJSON accepts a list of EnvVar or a map of name to literal value.
func (e *EnvList) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '{' {
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber() // 1000000 stays "1000000", not "1e+06"
		if err := dec.Decode(&m); err != nil {
			return err
		}
		out := make(EnvList, 0, len(m))
		for k, v := range m {
			var s string
			switch v := v.(type) {
			case string:
				s = v
			case nil:
			case json.Number:
				s = v.String()
			case bool:
				s = fmt.Sprint(v)
			default:
				return fmt.Errorf("env %s: value must be a string, number or boolean", k)
			}
			out = append(out, EnvVar{Name: k, Value: s})
		}
		sortEnv(out)
		*e = out
		return nil
	}
	var l []EnvVar
	if err := json.Unmarshal(b, &l); err != nil {
		return err
	}
	*e = l
	return nil
}

func sortEnv(l EnvList) {
	for i := 1; i < len(l); i++ {
		for j := i; j > 0 && l[j].Name < l[j-1].Name; j-- {
			l[j], l[j-1] = l[j-1], l[j]
		}
	}
}

// Resources are what each instance reserves (the scheduler's requests) and
// its limits. Memory is always a hard limit: when Limits.Memory is unset it
// equals Memory. CPU is a share unless Limits.CPU caps it.
type Resources struct {
	CPU    CPU             `json:"cpu,omitempty"`
	Memory Bytes           `json:"memory,omitempty"`
	Pids   int64           `json:"pids,omitempty"`
	Limits *ResourceLimits `json:"limits,omitempty"`
}

// ResourceLimits cap what an instance may use.
type ResourceLimits struct {
	CPU    CPU   `json:"cpu,omitempty"`
	Memory Bytes `json:"memory,omitempty"`
}

// MemoryLimit is the hard memory limit applied to the container.
func (r Resources) MemoryLimit() Bytes {
	if r.Limits != nil && r.Limits.Memory > 0 {
		return r.Limits.Memory
	}
	return r.Memory
}

// CPULimit is the CPU cap applied to the container; 0 means none.
func (r Resources) CPULimit() CPU {
	if r.Limits != nil {
		return r.Limits.CPU
	}
	return 0
}

// Port protocols.
const (
	ProtocolHTTP = "http"
	ProtocolTCP  = "tcp"
	ProtocolUDP  = "udp"
)

// Port is a port the instance listens on.
type Port struct {
	Name     string `json:"name,omitempty"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol,omitempty"`
	// HostPort publishes the port on the node's address (portmap).
	HostPort int `json:"hostPort,omitempty"`
	// Expose "tcp" publishes the port on a node port balanced over every
	// ready instance (L4 load balancing).
	Expose   string `json:"expose,omitempty"`
	NodePort int    `json:"nodePort,omitempty"`
	// ProxyProtocol, with expose: tcp, makes the load balancer open each
	// relayed connection with a PROXY protocol header (ProxyProtocolV1 or
	// ProxyProtocolV2) that gives the instance the client's address.
	ProxyProtocol string `json:"proxyProtocol,omitempty"`
}

// PROXY protocol versions for Port.ProxyProtocol.
const (
	ProxyProtocolV1 = "v1"
	ProxyProtocolV2 = "v2"
)

// Health holds the three kinds of checks.
type Health struct {
	Readiness *Probe `json:"readiness,omitempty"`
	Liveness  *Probe `json:"liveness,omitempty"`
	Startup   *Probe `json:"startup,omitempty"`
}

// Probe is one health check. Exactly one of HTTP, TCP and Exec is set.
type Probe struct {
	HTTP             *HTTPCheck `json:"http,omitempty"`
	TCP              *TCPCheck  `json:"tcp,omitempty"`
	Exec             *ExecCheck `json:"exec,omitempty"`
	InitialDelay     Duration   `json:"initialDelay,omitempty"`
	Period           Duration   `json:"period,omitempty"`
	Timeout          Duration   `json:"timeout,omitempty"`
	FailureThreshold int        `json:"failureThreshold,omitempty"`
	SuccessThreshold int        `json:"successThreshold,omitempty"`
}

// HTTPCheck passes when GET path answers 200-399.
type HTTPCheck struct {
	Path string `json:"path,omitempty"`
	Port int    `json:"port"`
}

// TCPCheck passes when a connection to the port opens.
type TCPCheck struct {
	Port int `json:"port"`
}

// ExecCheck passes when the command exits 0 inside the container.
type ExecCheck struct {
	Command []string `json:"command"`
}

// Constraint operators.
const (
	OpEqual     = "="
	OpNotEqual  = "!="
	OpIn        = "in"
	OpNotIn     = "notin"
	OpExists    = "exists"
	OpNotExists = "!exists"
)

// Constraint restricts placement to nodes whose labels match.
type Constraint struct {
	Label  string   `json:"label"`
	Op     string   `json:"op,omitempty"`
	Value  string   `json:"value,omitempty"`
	Values []string `json:"values,omitempty"`
}

// Matches reports whether a node with the given labels satisfies c.
func (c Constraint) Matches(labels map[string]string) bool {
	v, has := labels[c.Label]
	switch c.Op {
	case OpEqual, "", "==":
		return has && v == c.Value
	case OpNotEqual:
		return !has || v != c.Value
	case OpIn:
		for _, x := range c.Values {
			if has && v == x {
				return true
			}
		}
		return false
	case OpNotIn:
		for _, x := range c.Values {
			if has && v == x {
				return false
			}
		}
		return true
	case OpExists:
		return has
	case OpNotExists:
		return !has
	}
	return false
}

// Placement strategies.
const (
	PlacementBinpack = "binpack"
	PlacementSpread  = "spread"
)

// Restart policies.
const (
	RestartAlways    = "always"
	RestartOnFailure = "on-failure"
	RestartNever     = "never"
)

// SecurityContext tightens or (where policy allows) loosens the container's
// sandbox.
type SecurityContext struct {
	RunAsUser              *int64        `json:"runAsUser,omitempty"`
	RunAsGroup             *int64        `json:"runAsGroup,omitempty"`
	ReadOnlyRootFilesystem bool          `json:"readOnlyRootFilesystem,omitempty"`
	Privileged             bool          `json:"privileged,omitempty"`
	HostNetwork            bool          `json:"hostNetwork,omitempty"`
	Capabilities           *Capabilities `json:"capabilities,omitempty"`
	// Allow32Bit lets 32-bit programs of the node's architecture family
	// (i386 on amd64, arm on arm64) make system calls. Off by default:
	// the seccomp filter then admits only the native ABI, and a 32-bit
	// program is killed by SIGSYS at its first system call. Images whose
	// config says they are built for that 32-bit architecture get it
	// without asking. See ADR 0009.
	Allow32Bit bool `json:"allow32Bit,omitempty"`
}

// Capabilities adds to or drops from the default capability set.
type Capabilities struct {
	Add  []string `json:"add,omitempty"`
	Drop []string `json:"drop,omitempty"`
}

// Strategy controls rolling updates.
type Strategy struct {
	MaxSurge       *IntOrPercent `json:"maxSurge,omitempty"`
	MaxUnavailable *IntOrPercent `json:"maxUnavailable,omitempty"`
	// ProgressDeadline is how long a rollout may go without a new
	// instance becoming ready before it is rolled back.
	ProgressDeadline Duration `json:"progressDeadline,omitempty"`
	// DrainDelay is how long an instance keeps serving in-flight
	// requests after it is taken out of the load balancer and DNS, before
	// it is sent SIGTERM.
	DrainDelay *Duration `json:"drainDelay,omitempty"`
	// MinReady is how long an instance must have been ready, without
	// a break, before it counts as available: before a rollout retires
	// an old instance for it and before the rollout is complete
	// (Kubernetes' minReadySeconds). It does not delay traffic: an
	// instance gets requests as soon as it is ready. 0, the default,
	// makes ready instances available at once.
	MinReady Duration `json:"minReady,omitempty"`
}

// Drain is the drain delay, DefaultDrainDelay when unset.
func (s *Strategy) Drain() Duration {
	if s.DrainDelay == nil {
		return DefaultDrainDelay
	}
	return *s.DrainDelay
}

// Route sends HTTP requests for a host (and path prefix) to the App.
type Route struct {
	Host string `json:"host"`
	Path string `json:"path,omitempty"`
	// Port names the App port to send to; the first http port by default.
	Port string `json:"port,omitempty"`
	// TLS names a Secret holding tls.crt and tls.key for Host, or "auto"
	// for a certificate from the cluster CA. Plain HTTP requests for a
	// route with TLS are then redirected to HTTPS (308) when the load
	// balancer serves HTTPS, unless AllowHTTP.
	TLS string `json:"tls,omitempty"`
	// AllowHTTP serves a TLS route over plain HTTP too, instead of
	// redirecting to HTTPS.
	AllowHTTP bool `json:"allowHTTP,omitempty"`
}

// Autoscale lets a controller set the replica count from load.
type Autoscale struct {
	Min              int32 `json:"min"`
	Max              int32 `json:"max"`
	TargetCPUPercent int   `json:"targetCPUPercent,omitempty"`
	// TargetRequestsPerSecond is ingress requests per second per instance.
	TargetRequestsPerSecond float64 `json:"targetRequestsPerSecond,omitempty"`
}

// NetworkPolicy says which other namespaces may open connections to the
// App's instances. Instances of the same namespace always may.
type NetworkPolicy struct {
	AllowFrom []string `json:"allowFrom,omitempty"`
}

// AppStatus is what the controllers observed.
type AppStatus struct {
	// Revision is the number of the revision the App should run: its
	// newest.
	Revision int64 `json:"revision,omitempty"`
	// TemplateHash identifies the current revision's template and pinned
	// image, so that a write can tell a template change without reading
	// the revision.
	TemplateHash string `json:"templateHash,omitempty"`
	// StableRevision is the last revision that completed a rollout; an
	// automatic rollback returns to it.
	StableRevision  int64 `json:"stableRevision,omitempty"`
	Replicas        int32 `json:"replicas"`
	ReadyReplicas   int32 `json:"readyReplicas"`
	UpdatedReplicas int32 `json:"updatedReplicas"`
	// UpdatedReady counts ready instances of the current revision.
	UpdatedReady int32 `json:"updatedReady"`
	// AvailableReplicas and UpdatedAvailable count the instances (all,
	// and of the current revision) that have been ready for
	// spec.strategy.minReady; without it they equal the ready counts.
	AvailableReplicas int32 `json:"availableReplicas"`
	UpdatedAvailable  int32 `json:"updatedAvailable"`
	// PeakUpdatedReady is the most instances of the current revision
	// ready at once since its rollout began (at most the replicas asked
	// for). Only going above it is progress, so an instance whose
	// readiness flaps does not hold the progress deadline off.
	PeakUpdatedReady int32 `json:"peakUpdatedReady,omitempty"`
	// PeakUpdatedAvailable is the same for available instances (ready
	// for spec.strategy.minReady): with minReady, an instance becoming
	// available is progress too.
	PeakUpdatedAvailable int32  `json:"peakUpdatedAvailable,omitempty"`
	Phase                string `json:"phase,omitempty"`
	Message              string `json:"message,omitempty"`
	// RolloutStarted is when the current revision's rollout began.
	RolloutStarted *time.Time `json:"rolloutStarted,omitempty"`
	// Progressed is the last time more new instances were ready, or
	// available, than ever before in this rollout (PeakUpdatedReady,
	// PeakUpdatedAvailable).
	Progressed *time.Time `json:"progressed,omitempty"`
	// ObservedReplicas is the replica count the controller last worked
	// toward: a status whose count differs from the App's is older than
	// its last scale (Stalled in particular says nothing then).
	ObservedReplicas int32 `json:"observedReplicas,omitempty"`
	// Stalled says that, outside a rollout, the App has not come closer
	// to its replicas for a whole progress deadline (a scale-up with no
	// room, a replaced instance that never gets ready); progress or a
	// new rollout clears it. The App is Degraded meanwhile.
	Stalled bool `json:"stalled,omitempty"`
	// RolledBack records the last automatic rollback.
	RolledBack *RollbackRecord `json:"rolledBack,omitempty"`
	// AutoscaleReplicas is the autoscaler's choice of replicas; it wins
	// over spec.replicas while spec.autoscale is set.
	AutoscaleReplicas int32 `json:"autoscaleReplicas,omitempty"`
	// AutoscaleReason explains the autoscaler's last decision.
	AutoscaleReason string `json:"autoscaleReason,omitempty"`
	// NodePorts are the node ports the load balancer publishes the
	// App's exposed ports on (expose: tcp), given in the spec or chosen
	// by it; written by the server.
	NodePorts []NodePortStatus `json:"nodePorts,omitempty"`
}

// NodePortStatus is where one exposed port is published.
type NodePortStatus struct {
	// Port is the name of the App's port.
	Port     string `json:"port"`
	NodePort int    `json:"nodePort"`
}

// RollbackRecord says why a rollout was undone automatically.
type RollbackRecord struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
	// Revision is the revision the rollback made (with To's template).
	Revision int64     `json:"revision,omitempty"`
	Time     time.Time `json:"time"`
	Reason   string    `json:"reason"`
}

// App phases.
const (
	AppProgressing = "Progressing"
	AppRunning     = "Running"
	AppDegraded    = "Degraded"
	AppRolledBack  = "RolledBack"
	AppPaused      = "Paused"
	AppFailed      = "Failed"
	// AppCompleted: an App whose restart policy is not always has every
	// instance of its current revision run to completion (Succeeded).
	AppCompleted = "Completed"
)

// DesiredReplicas returns the replica count the App asks for.
func (a *App) DesiredReplicas() int32 {
	if as := a.Spec.Autoscale; as != nil {
		n := a.Status.AutoscaleReplicas
		if n == 0 && a.Spec.Replicas != nil {
			n = *a.Spec.Replicas
		}
		return max(as.Min, min(as.Max, n))
	}
	if a.Spec.Replicas != nil {
		return *a.Spec.Replicas
	}
	return 1
}

func init() {
	Register(&KindInfo{Kind: "App", Plural: "apps", Aliases: []string{"application", "applications"}, Namespaced: true, New: func() Object { return &App{} }})
}
