package scheduler

import (
	"slices"
	"strconv"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Request is what one Instance asks of a node.
type Request struct {
	// App is "namespace/app"; instances with the same App are kept apart
	// by the spread strategy. Empty means the instance belongs to no app.
	App         string
	CPU         v1.CPU
	Memory      v1.Bytes
	Constraints []v1.Constraint
	HostPorts   []HostPort
	// Placement is v1.PlacementBinpack (also when empty) or
	// v1.PlacementSpread.
	Placement string
}

// RequestFor returns the request of an Instance's template.
func RequestFor(inst *v1.Instance) Request {
	t := &inst.Spec.Template
	r := Request{
		CPU:         t.Resources.CPU,
		Memory:      t.Resources.Memory,
		Constraints: t.Constraints,
		Placement:   t.Placement,
	}
	if inst.Spec.App != "" {
		r.App = inst.Metadata.Namespace + "/" + inst.Spec.App
	}
	r.HostPorts = nodePorts(t, false)
	return r
}

// nodePorts are the ports an instance of template t takes on its node's
// address: its ports[].hostPort mappings, or, with hostNetwork, its
// container ports, on which it listens there itself. With mappedOnly,
// only the mappings, which outlive the process (a hostNetwork socket
// does not).
func nodePorts(t *v1.Template, mappedOnly bool) []HostPort {
	hostNetwork := t.SecurityContext != nil && t.SecurityContext.HostNetwork
	if hostNetwork && mappedOnly {
		return nil
	}
	var out []HostPort
	for _, p := range t.Ports {
		port := p.HostPort
		if hostNetwork {
			port = p.Port
		}
		if hp := (HostPort{Port: port, Protocol: transport(p.Protocol)}); port > 0 && !slices.Contains(out, hp) {
			out = append(out, hp)
		}
	}
	return out
}

// fitKey appends an encoding of everything in r that the Filters look at:
// requests with equal keys fit on exactly the same nodes.
func fitKey(b []byte, r *Request) []byte {
	b = strconv.AppendInt(b, int64(r.CPU), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(r.Memory), 10)
	for _, p := range r.HostPorts {
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(p.Port), 10)
		b = append(b, p.Protocol...)
	}
	b = append(b, ' ')
	return constraintKey(b, r.Constraints)
}

// HostPort is a port published on a node's address. Two instances conflict
// only when both port and transport protocol are equal.
type HostPort struct {
	Port int
	// Protocol is "tcp" or "udp"; an App's "http" port is "tcp" here.
	Protocol string
}

func (p HostPort) String() string { return strconv.Itoa(p.Port) + "/" + p.Protocol }

// transport maps an App port protocol to the transport that occupies the
// node's port.
func transport(protocol string) string {
	if protocol == v1.ProtocolUDP {
		return v1.ProtocolUDP
	}
	return v1.ProtocolTCP
}

// holdsPorts reports whether a bound instance that no longer counts (it
// finished) still holds host ports on its node: until its agent has
// released its network namespace and the port mappings in it, which it
// says by clearing the instance's address (agents before 2026-11-28 kept
// them until the instance was deleted).
func holdsPorts(inst *v1.Instance) bool {
	return inst.Spec.Node != "" && inst.Status.IP != "" && len(mappedHostPorts(inst)) > 0
}

// mappedHostPorts are the host ports the agent maps into an instance's
// network namespace (ports[].hostPort); a hostNetwork instance has none.
func mappedHostPorts(inst *v1.Instance) []HostPort { return nodePorts(&inst.Spec.Template, true) }

// counts reports whether an instance holds resources on a node: it is
// bound and has not finished. Instances being deleted still count, because
// their containers run until the agent has drained and stopped them.
func counts(inst *v1.Instance) bool {
	return inst.Spec.Node != "" && !inst.Status.Finished()
}
