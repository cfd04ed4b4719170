package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

func kindName[T v1.Object]() (string, error) {
	for _, k := range v1.Kinds() {
		if _, ok := k.New().(T); ok {
			return k.Kind, nil
		}
	}
	var zero T
	return "", fmt.Errorf("%T is not an API kind", zero)
}

// Get reads one object of type T.
func Get[T v1.Object](ctx context.Context, c *Client, ns, name string) (T, error) {
	var zero T
	kind, err := kindName[T]()
	if err != nil {
		return zero, err
	}
	o, err := c.Get(ctx, kind, ns, name)
	if err != nil {
		return zero, err
	}
	return o.(T), nil
}

// List reads every object of type T in ns (every namespace if empty).
func List[T v1.Object](ctx context.Context, c *Client, ns string, opts ListOptions) ([]T, int64, error) {
	kind, err := kindName[T]()
	if err != nil {
		return nil, 0, err
	}
	objs, rev, err := c.List(ctx, kind, ns, opts)
	if err != nil {
		return nil, 0, err
	}
	out := make([]T, len(objs))
	for i, o := range objs {
		out[i] = o.(T)
	}
	return out, rev, nil
}

// Scale sets an App's replica count.
func (c *Client) Scale(ctx context.Context, ns, app string, replicas int32) (*v1.App, error) {
	out := &v1.App{}
	err := c.Sub(ctx, http.MethodPut, "App", ns, app, "scale", map[string]int32{"replicas": replicas}, out)
	return out, err
}

// Rollback returns an App to revision to (0: the previous one).
func (c *Client) Rollback(ctx context.Context, ns, app string, to int64) (*v1.App, error) {
	out := &v1.App{}
	err := c.Sub(ctx, http.MethodPost, "App", ns, app, "rollback", map[string]int64{"toRevision": to}, out)
	return out, err
}

// Pause stops (or, with pause false, resumes) an App's rollouts.
func (c *Client) Pause(ctx context.Context, ns, app string, pause bool) (*v1.App, error) {
	sub := "resume"
	if pause {
		sub = "pause"
	}
	out := &v1.App{}
	err := c.Sub(ctx, http.MethodPost, "App", ns, app, sub, nil, out)
	return out, err
}

// Restart rolls every instance of an App onto a fresh revision.
func (c *Client) Restart(ctx context.Context, ns, app string) (*v1.App, error) {
	out := &v1.App{}
	err := c.Sub(ctx, http.MethodPost, "App", ns, app, "restart", nil, out)
	return out, err
}

// UpdateInstanceStatus writes an instance's status (agents).
func (c *Client) UpdateInstanceStatus(ctx context.Context, i *v1.Instance) (*v1.Instance, error) {
	out := &v1.Instance{}
	err := c.Sub(ctx, http.MethodPut, "Instance", i.Metadata.Namespace, i.Metadata.Name, "status", i, out)
	return out, err
}

// RegisterNode creates or refreshes the caller's Node (agents).
func (c *Client) RegisterNode(ctx context.Context, name string, labels map[string]string, st v1.NodeStatus) (*v1.Node, error) {
	out := &v1.Node{}
	err := c.Sub(ctx, http.MethodPost, "Node", "", name, "register", map[string]any{"labels": labels, "status": st}, out)
	return out, err
}

// Heartbeat renews a node's lease (agents).
func (c *Client) Heartbeat(ctx context.Context, name string) error {
	return c.Sub(ctx, http.MethodPost, "Node", "", name, "heartbeat", nil, nil)
}

// UpdateNodeStatus writes a node's status (agents).
func (c *Client) UpdateNodeStatus(ctx context.Context, n *v1.Node) (*v1.Node, error) {
	out := &v1.Node{}
	err := c.Sub(ctx, http.MethodPut, "Node", "", n.Metadata.Name, "status", n, out)
	return out, err
}

// CreatedToken is a new token with its secret, shown once.
type CreatedToken struct {
	v1.Token
	Secret string `json:"secret"`
}

// CreateToken makes an API token for user (the caller when empty).
func (c *Client) CreateToken(ctx context.Context, spec v1.TokenSpec) (*CreatedToken, error) {
	out := &CreatedToken{}
	body := &v1.Token{TypeMeta: v1.TypeMeta{Kind: "Token"}, Spec: spec}
	_, err := c.Do(ctx, http.MethodPost, "/api/v1/tokens", nil, body, out)
	return out, err
}

// RevealSecret returns a Secret's values, as stored: byte for byte, also
// values that are not text. It asks for them base64-encoded; a server from
// before that encoding answers with text, which is taken as it is.
func (c *Client) RevealSecret(ctx context.Context, ns, name string) (map[string][]byte, error) {
	k, _ := v1.LookupKind("Secret")
	p, err := ObjectPath(k, ns, name)
	if err != nil {
		return nil, err
	}
	var raw map[string]json.RawMessage
	if _, err := c.Do(ctx, http.MethodGet, p+"/reveal", url.Values{"encoding": {"base64"}}, nil, &raw); err != nil {
		return nil, err
	}
	return decodeRevealed(raw)
}

// decodeRevealed reads a reveal's answer: {"data": {KEY: BASE64}} when the
// server encoded the values, else {KEY: TEXT}. A text answer's values are
// all strings, so a key named "data" in it never holds an object.
func decodeRevealed(raw map[string]json.RawMessage) (map[string][]byte, error) {
	if d, ok := raw["data"]; ok && len(raw) == 1 && len(d) > 0 && d[0] == '{' {
		var out map[string][]byte
		if err := json.Unmarshal(d, &out); err != nil {
			return nil, fmt.Errorf("read revealed secret: %w", err)
		}
		return out, nil
	}
	out := make(map[string][]byte, len(raw))
	for k, v := range raw {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, fmt.Errorf("read revealed secret key %q: %w", k, err)
		}
		out[k] = []byte(s)
	}
	return out, nil
}
