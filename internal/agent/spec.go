package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/network"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// instanceDir holds an instance's generated files.
func (a *Agent) instanceDir(id string) string { return filepath.Join(a.cfg.DataDir, "instances", id) }

// LogPath is where an instance's container log lives. It outlives the
// instance so that its logs stay readable after it stopped.
func (a *Agent) LogPath(ns, name string) string {
	return filepath.Join(a.cfg.DataDir, "logs", ns, name+".log")
}

// containerSpec turns an instance into what the runtime runs. It needs
// no network attachment, so the container and its task are created while
// the network is set up: /etc/hosts, which holds the instance's IP, is a
// bind mount of dir/hosts, which WriteHosts fills in before the container
// starts.
//
// It also returns the secret values it put into the environment, which
// no message may repeat (see worker.redact).
func (a *Agent) containerSpec(ctx context.Context, i *v1.Instance, id string) (*runtime.ContainerSpec, []string, error) {
	t := i.Spec.Template
	dir := a.instanceDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	resolv, err := a.net.WriteResolvConf(dir, i.Metadata.Namespace, a.cfg.ClusterDomain)
	if err != nil {
		return nil, nil, fmt.Errorf("write resolv.conf: %w", err)
	}
	env, secrets, err := a.environment(ctx, i)
	if err != nil {
		return nil, nil, err
	}
	// The task is created before the IP is known, and its mount needs the
	// file: an empty one until WriteHosts fills it in, in place.
	hosts := filepath.Join(dir, network.HostsFile)
	f, err := os.OpenFile(hosts, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("hosts file: %w", err)
	}
	f.Close()
	mounts := []runtime.Mount{
		{Source: resolv, Destination: "/etc/resolv.conf", ReadOnly: true},
		{Source: hosts, Destination: "/etc/hosts", ReadOnly: true},
	}
	files, err := a.secretFiles(ctx, i)
	if err != nil {
		return nil, nil, err
	}
	mounts = append(mounts, files...)
	logPath := a.LogPath(i.Metadata.Namespace, i.Metadata.Name)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return nil, nil, err
	}
	spec := &runtime.ContainerSpec{
		ID:    id,
		Image: i.Spec.Image,
		Labels: map[string]string{
			labelInstance:  i.Metadata.Name,
			labelNamespace: i.Metadata.Namespace,
			labelUID:       i.Metadata.UID,
			v1.LabelApp:    i.Spec.App,
		},
		Command:    t.Command,
		Args:       t.Args,
		Env:        env,
		WorkingDir: t.WorkingDir,
		Hostname:   i.Metadata.Name,
		NetNSPath:  a.net.NetNSPath(id),
		Resources: runtime.Resources{
			CPURequestMillis: int64(t.Resources.CPU),
			CPULimitMillis:   int64(t.Resources.CPULimit()),
			MemoryLimitBytes: int64(t.Resources.MemoryLimit()),
			PidsLimit:        t.Resources.Pids,
		},
		Mounts:      mounts,
		LogPath:     logPath,
		LogMaxSize:  a.cfg.LogMaxSize,
		LogMaxFiles: a.cfg.LogMaxFiles,
	}
	if sc := t.SecurityContext; sc != nil {
		spec.Security = runtime.Security{
			Privileged: sc.Privileged, ReadOnlyRootfs: sc.ReadOnlyRootFilesystem,
			RunAsUser: sc.RunAsUser, RunAsGroup: sc.RunAsGroup, Allow32Bit: sc.Allow32Bit,
		}
		if sc.Capabilities != nil {
			spec.Security.CapAdd, spec.Security.CapDrop = sc.Capabilities.Add, sc.Capabilities.Drop
		}
		if sc.HostNetwork {
			spec.HostNetwork, spec.NetNSPath = true, ""
		}
	}
	return spec, secrets, nil
}

// hostPorts lists the ports the instance publishes on the node.
func hostPorts(i *v1.Instance) []network.PortMapping {
	var out []network.PortMapping
	for _, p := range i.Spec.Template.Ports {
		if p.HostPort == 0 {
			continue
		}
		proto := "tcp"
		if p.Protocol == v1.ProtocolUDP {
			proto = "udp"
		}
		out = append(out, network.PortMapping{HostPort: p.HostPort, ContainerPort: p.Port, Protocol: proto})
	}
	return out
}

// eventf records an event through the API; failures only log.
func (a *Agent) eventf(ctx context.Context, obj v1.Object, typ, reason, format string, args ...any) {
	m := obj.GetMeta()
	e := &v1.Event{
		TypeMeta: v1.TypeMeta{Kind: "Event"},
		Metadata: v1.ObjectMeta{Name: m.Name + "." + randomHex(6), Namespace: m.Namespace},
		Type:     typ, Reason: reason, Message: fmt.Sprintf(format, args...),
		Object: v1.ObjectRef{Kind: obj.GetType().Kind, Name: m.Name},
		Source: "agent/" + a.cfg.NodeName, Count: 1,
	}
	if app := m.Labels[v1.LabelApp]; app != "" {
		e.Metadata.Labels = map[string]string{v1.LabelApp: app}
	}
	go func() {
		if err := a.api.Create(context.WithoutCancel(ctx), e); err != nil {
			a.log.Debug("record event", "reason", reason, "err", err)
		}
	}()
}

func equalJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

func randomHex(n int) string {
	return strings.ToLower(fmt.Sprintf("%x", randBytes(n)))[:n]
}

// environment is the container's environment, and the secret values in
// it.
func (a *Agent) environment(ctx context.Context, i *v1.Instance) (env, secrets []string, err error) {
	t := i.Spec.Template
	env = []string{
		"GANTRY_INSTANCE=" + i.Metadata.Name,
		"GANTRY_APP=" + i.Spec.App,
		"GANTRY_NAMESPACE=" + i.Metadata.Namespace,
		"GANTRY_REVISION=" + fmt.Sprint(i.Spec.Revision),
	}
	for _, e := range t.Env {
		if e.Secret != nil {
			v, err := a.secretValue(ctx, i.Metadata.Namespace, e.Secret.Name, e.Secret.Key)
			if err != nil {
				return nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			// What the runtime would refuse is refused here, naming the
			// key: runc's own error quotes NAME=value, the secret in
			// clear, and a value too long for the kernel fails only
			// the program's exec.
			if strings.IndexByte(v, 0) >= 0 {
				return nil, nil, fmt.Errorf("%w: env %s: key %q of secret %s holds a NUL byte, which no environment variable can: mount it as a file (files:) instead", v1.ErrInvalid, e.Name, e.Secret.Key, e.Secret.Name)
			}
			if n := len(e.Name) + 1 + len(v); n > v1.MaxArgLen {
				return nil, nil, fmt.Errorf("%w: env %s: key %q of secret %s makes NAME=value %d bytes, and the kernel takes at most %d per variable: mount it as a file (files:) instead", v1.ErrInvalid, e.Name, e.Secret.Key, e.Secret.Name, n, v1.MaxArgLen)
			}
			env = append(env, e.Name+"="+v)
			secrets = append(secrets, v)
			continue
		}
		env = append(env, e.Name+"="+e.Value)
	}
	return env, secrets, nil
}
