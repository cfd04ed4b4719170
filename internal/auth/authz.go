package auth

import (
	"fmt"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Attributes describe one request for authorization.
type Attributes struct {
	Verb        string // get, list, watch, create, update, delete, or a subresource verb
	Resource    string // plural: apps, instances, images, …
	Subresource string // status, scale, logs, exec, …
	Namespace   string
	Name        string
}

func (a Attributes) String() string {
	r := a.Resource
	if a.Subresource != "" {
		r += "/" + a.Subresource
	}
	if a.Namespace != "" {
		return fmt.Sprintf("%s %s in namespace %q", a.Verb, r, a.Namespace)
	}
	return fmt.Sprintf("%s %s", a.Verb, r)
}

// Forbidden builds the error for a denied request, naming the permission
// that is missing.
func Forbidden(id *Identity, a Attributes, why string) error {
	msg := fmt.Sprintf("user %q may not %s", id.User, a)
	if why != "" {
		msg += ": " + why
	}
	return fmt.Errorf("%w: %s", v1.ErrForbidden, msg)
}
