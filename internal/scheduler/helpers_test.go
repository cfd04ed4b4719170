package scheduler

import (
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

const (
	mi = v1.Bytes(1 << 20)
	gi = v1.Bytes(1 << 30)
)

// newNode returns a ready node offering cpu and memory, with labels given
// as "key", "value" pairs.
func newNode(name string, cpu v1.CPU, mem v1.Bytes, labels ...string) *v1.Node {
	n := &v1.Node{
		TypeMeta: v1.TypeMeta{Kind: "Node", APIVersion: v1.Version},
		Metadata: v1.ObjectMeta{Name: name},
		Status: v1.NodeStatus{
			Ready:       true,
			Allocatable: v1.Capacity{CPU: cpu, Memory: mem},
			Capacity:    v1.Capacity{CPU: cpu, Memory: mem},
		},
	}
	if len(labels) > 0 {
		n.Metadata.Labels = map[string]string{}
		for i := 0; i+1 < len(labels); i += 2 {
			n.Metadata.Labels[labels[i]] = labels[i+1]
		}
	}
	return n
}

// newInstance returns an unbound instance of app in namespace "default"
// requesting cpu and memory.
func newInstance(name, app string, cpu v1.CPU, mem v1.Bytes) *v1.Instance {
	return &v1.Instance{
		TypeMeta: v1.TypeMeta{Kind: "Instance", APIVersion: v1.Version},
		Metadata: v1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{v1.LabelApp: app}},
		Spec: v1.InstanceSpec{
			App:   app,
			Image: "busybox",
			Template: v1.Template{
				Image:     "busybox",
				Resources: v1.Resources{CPU: cpu, Memory: mem},
				Placement: v1.PlacementBinpack,
			},
		},
		Status: v1.InstanceStatus{Phase: v1.PhasePending},
	}
}

func boundTo(inst *v1.Instance, node string) *v1.Instance {
	inst.Spec.Node = node
	inst.Status.Node = node
	return inst
}

func withPhase(inst *v1.Instance, phase string) *v1.Instance {
	inst.Status.Phase = phase
	return inst
}

func mustNode(t *testing.T, s *Snapshot, name string) NodeInfo {
	t.Helper()
	n, ok := s.Node(name)
	if !ok {
		t.Fatalf("node %s is not in the snapshot", name)
	}
	return n
}
