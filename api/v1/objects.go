package v1

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// Revision is an immutable snapshot of an App's template. Every change to
// the template creates the next one: 1, 2, 3, …
type Revision struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta   `json:"metadata"`
	Spec     RevisionSpec `json:"spec"`
}

// GetMeta returns the Revision's metadata.
func (r *Revision) GetMeta() *ObjectMeta { return &r.Metadata }

// RevisionSpec is the snapshot.
type RevisionSpec struct {
	App    string `json:"app"`
	Number int64  `json:"number"`
	// Template is the App template as applied.
	Template Template `json:"template"`
	// Image is Template.Image made absolute: a bare name is qualified
	// with the cluster registry and the App's namespace.
	Image string `json:"image,omitempty"`
	// ImageDigest pins Image to the digest it had when the revision was
	// made, so a re-pushed tag never changes what runs.
	ImageDigest string `json:"imageDigest,omitempty"`
	Hash        string `json:"hash"`
	ChangeCause string `json:"changeCause,omitempty"`
}

// RevisionName is the store name of revision n of an App.
func RevisionName(app string, n int64) string {
	return app + "-" + strconv.FormatInt(n, 10)
}

// Instance is one running copy of an App revision, bound to a node.
type Instance struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta     `json:"metadata"`
	Spec     InstanceSpec   `json:"spec"`
	Status   InstanceStatus `json:"status,omitzero"`
}

// GetMeta returns the Instance's metadata.
func (i *Instance) GetMeta() *ObjectMeta { return &i.Metadata }

// ForeignTo reports whether i was made for another App than a, one of the
// same name since deleted (LabelAppUID): the controller retires it, and it
// gets none of a's traffic. Instances made before the label are a's.
func (i *Instance) ForeignTo(a *App) bool {
	uid, ok := i.Metadata.Labels[LabelAppUID]
	return ok && uid != a.Metadata.UID
}

// InstanceSpec says what the instance runs and where.
type InstanceSpec struct {
	App      string   `json:"app"`
	Revision int64    `json:"revision"`
	Template Template `json:"template"`
	// Image is the reference the agent pulls: the template image pinned
	// to its digest when one is known.
	Image string `json:"image"`
	// Node is empty until the scheduler binds the instance.
	Node string `json:"node,omitempty"`
	// DrainDelay is copied from the App strategy when the instance is
	// created and again when it is marked for deletion; the agent reads
	// it only for an instance marked for deletion.
	DrainDelay Duration `json:"drainDelay,omitempty"`
	// AllowFrom lists other namespaces whose instances may connect.
	AllowFrom []string `json:"allowFrom,omitempty"`
}

// Instance phases.
const (
	PhasePending     = "Pending"
	PhasePulling     = "Pulling"
	PhaseStarting    = "Starting"
	PhaseRunning     = "Running"
	PhaseBackOff     = "CrashLoopBackOff"
	PhaseFailed      = "Failed"
	PhaseSucceeded   = "Succeeded"
	PhaseTerminating = "Terminating"
	PhaseLost        = "Lost"
)

// Finished reports whether the instance ran to its end: Succeeded, or
// Failed (its restart policy did not run it again). It never runs again.
func (s InstanceStatus) Finished() bool { return s.Phase == PhaseSucceeded || s.Phase == PhaseFailed }

// InstanceStatus is reported by the scheduler (while pending) and then by
// the node's agent.
type InstanceStatus struct {
	Phase string `json:"phase,omitempty"`
	// Ready is true while readiness checks pass; only ready instances get
	// traffic from the load balancer and appear in DNS.
	Ready       bool       `json:"ready"`
	IP          string     `json:"ip,omitempty"`
	Node        string     `json:"node,omitempty"`
	Restarts    int        `json:"restarts"`
	ExitCode    *int       `json:"exitCode,omitempty"`
	Message     string     `json:"message,omitempty"`
	Reason      string     `json:"reason,omitempty"`
	ContainerID string     `json:"containerID,omitempty"`
	ImageDigest string     `json:"imageDigest,omitempty"`
	StartedAt   *time.Time `json:"startedAt,omitempty"`
	FinishedAt  *time.Time `json:"finishedAt,omitempty"`
	ReadySince  *time.Time `json:"readySince,omitempty"`
	// HostPorts maps published container ports to node ports.
	HostPorts map[string]int `json:"hostPorts,omitempty"`
}

// Node is a machine that runs instances.
type Node struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     NodeSpec   `json:"spec"`
	Status   NodeStatus `json:"status,omitzero"`
}

// GetMeta returns the Node's metadata.
func (n *Node) GetMeta() *ObjectMeta { return &n.Metadata }

// NodeSpec is what the cluster decides about a node.
type NodeSpec struct {
	// Unschedulable keeps new instances off the node (cordon).
	Unschedulable bool `json:"unschedulable,omitempty"`
	// Subnet is the node's share of the cluster CIDR, handed out by the
	// server when the node registers.
	Subnet string `json:"subnet,omitempty"`
}

// NodeStatus is what the node's agent reports.
type NodeStatus struct {
	Ready       bool       `json:"ready"`
	Address     string     `json:"address,omitempty"`
	Capacity    Capacity   `json:"capacity,omitzero"`
	Allocatable Capacity   `json:"allocatable,omitzero"`
	Heartbeat   *time.Time `json:"heartbeat,omitempty"`
	Message     string     `json:"message,omitempty"`
	AgentVer    string     `json:"agentVersion,omitempty"`
	Runtime     string     `json:"runtime,omitempty"`
	OS          string     `json:"os,omitempty"`
	Arch        string     `json:"arch,omitempty"`
	// BridgeIP is the address of the node's container bridge, where the
	// node's DNS server listens for containers.
	BridgeIP string `json:"bridgeIP,omitempty"`
	// AgentURL is where the server reaches the agent for logs and exec.
	AgentURL string `json:"agentURL,omitempty"`
	// JoinedAt is set by the server when a machine joins under the name
	// of a Node that exists (a dead node's): the start of its
	// certificate. Node certificates that start before it are another
	// machine's, which no longer holds the name, and are refused.
	// Agents cannot write it.
	JoinedAt *time.Time `json:"joinedAt,omitempty"`
}

// Capacity counts a node's resources.
type Capacity struct {
	CPU       CPU   `json:"cpu,omitempty"`
	Memory    Bytes `json:"memory,omitempty"`
	Instances int   `json:"instances,omitempty"`
}

// Namespace is a tenant: it holds apps, secrets and images, and carries the
// quota and policy that apply to them.
type Namespace struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta    `json:"metadata"`
	Spec     NamespaceSpec `json:"spec,omitzero"`
}

// GetMeta returns the Namespace's metadata.
func (n *Namespace) GetMeta() *ObjectMeta { return &n.Metadata }

// NamespaceSpec holds the namespace's quota and limits.
type NamespaceSpec struct {
	Quota  *Quota         `json:"quota,omitempty"`
	Limits *LimitDefaults `json:"limits,omitempty"`
	Policy *Policy        `json:"policy,omitempty"`
}

// Quota caps what a namespace may reserve in total. Zero means no cap.
type Quota struct {
	CPU       CPU   `json:"cpu,omitempty"`
	Memory    Bytes `json:"memory,omitempty"`
	Instances int   `json:"instances,omitempty"`
	Apps      int   `json:"apps,omitempty"`
	Secrets   int   `json:"secrets,omitempty"`
	Storage   Bytes `json:"registryStorage,omitempty"`
}

// LimitDefaults fill in and cap per-container resources.
type LimitDefaults struct {
	DefaultCPU    CPU   `json:"defaultCPU,omitempty"`
	DefaultMemory Bytes `json:"defaultMemory,omitempty"`
	MaxCPU        CPU   `json:"maxCPU,omitempty"`
	MaxMemory     Bytes `json:"maxMemory,omitempty"`
}

// Policy is what a cluster admin allows a namespace beyond the defaults.
type Policy struct {
	AllowPrivileged  bool `json:"allowPrivileged,omitempty"`
	AllowHostNetwork bool `json:"allowHostNetwork,omitempty"`
	// AllowCapabilities names the capabilities beyond DefaultCapabilities
	// that Apps of the namespace may add (NET_ADMIN, SYS_PTRACE...).
	// Most of them open ways out of the sandbox or around network
	// isolation; adding ALL takes AllowPrivileged.
	AllowCapabilities []string `json:"allowCapabilities,omitempty"`
	// AllowHostPorts lets Apps publish ports (ports[].hostPort) on the
	// node's addresses, where they take precedence over any service of
	// the node on that port, Gantry's own included.
	AllowHostPorts bool `json:"allowHostPorts,omitempty"`
	// AllowPrivateTargets lets this namespace's notifiers and health
	// checks reach loopback, link-local and private addresses and the
	// API server (refused by default: SSRF).
	AllowPrivateTargets bool `json:"allowPrivateTargets,omitempty"`
}

// DefaultCapabilities are the capabilities a container gets unless its
// App drops them: Docker's default set less NET_RAW. An App may add these
// back after dropping them; any other needs the namespace's policy.
var DefaultCapabilities = []string{
	"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
	"NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}

// CapabilityName is a capability as policies compare it: upper case,
// without the CAP_ prefix ("cap_net_admin" is NET_ADMIN).
func CapabilityName(c string) string {
	return strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(c)), "CAP_")
}

// LinuxCapabilities are the Linux capabilities up to 6.x, by CapabilityName.
var LinuxCapabilities = []string{
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID",
	"KILL", "SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE",
	"NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
	"IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT",
	"SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
	"SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE",
	"AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE",
	"MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
	"PERFMON", "BPF", "CHECKPOINT_RESTORE",
}

// isCapability reports whether c names a Linux capability (with or
// without CAP_, in any case).
func isCapability(c string) bool { return slices.Contains(LinuxCapabilities, CapabilityName(c)) }

// Event records something that happened to an object.
type Event struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	// Type is Normal or Warning.
	Type    string    `json:"type"`
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
	Object  ObjectRef `json:"object"`
	Source  string    `json:"source,omitempty"`
	Count   int       `json:"count,omitempty"`
	Time    time.Time `json:"time"`
}

// GetMeta returns the Event's metadata.
func (e *Event) GetMeta() *ObjectMeta { return &e.Metadata }

// ObjectRef points at an object.
type ObjectRef struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// Event types.
const (
	EventNormal  = "Normal"
	EventWarning = "Warning"
)

func init() {
	Register(&KindInfo{Kind: "Revision", Plural: "revisions", Aliases: []string{"rev", "revs"}, Namespaced: true, Immutable: true, New: func() Object { return &Revision{} }})
	Register(&KindInfo{Kind: "Instance", Plural: "instances", Aliases: []string{"inst", "i"}, Namespaced: true, New: func() Object { return &Instance{} }})
	Register(&KindInfo{Kind: "Node", Plural: "nodes", Aliases: []string{"no"}, New: func() Object { return &Node{} }})
	Register(&KindInfo{Kind: "Namespace", Plural: "namespaces", Aliases: []string{"ns"}, New: func() Object { return &Namespace{} }})
	Register(&KindInfo{Kind: "Event", Plural: "events", Aliases: []string{"ev"}, Namespaced: true, New: func() Object { return &Event{} }})
}
