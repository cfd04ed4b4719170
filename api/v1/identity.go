package v1

import (
	"fmt"
	"time"
)

// User is a person or robot that calls the API.
type User struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     UserSpec   `json:"spec,omitzero"`
}

// GetMeta returns the User's metadata.
func (u *User) GetMeta() *ObjectMeta { return &u.Metadata }

// UserSpec describes a user.
type UserSpec struct {
	FullName string `json:"fullName,omitempty"`
	Email    string `json:"email,omitempty"`
	Disabled bool   `json:"disabled,omitempty"`
}

// Token is an API credential of a user. The secret part is shown once,
// when the token is made; the store keeps only its SHA-256.
type Token struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta  `json:"metadata"`
	Spec     TokenSpec   `json:"spec"`
	Status   TokenStatus `json:"status,omitzero"`
}

// GetMeta returns the Token's metadata.
func (t *Token) GetMeta() *ObjectMeta { return &t.Metadata }

// TokenSpec holds what the token grants.
type TokenSpec struct {
	User        string     `json:"user"`
	Hash        string     `json:"hash,omitempty"`
	Expires     *time.Time `json:"expires,omitempty"`
	Revoked     bool       `json:"revoked,omitempty"`
	Description string     `json:"description,omitempty"`
	// Node, when set, makes this a node credential: it may act only as
	// that node (read the instances bound to it, write their status).
	Node string `json:"node,omitempty"`
}

// TokenStatus records use.
type TokenStatus struct {
	LastUsed *time.Time `json:"lastUsed,omitempty"`
}

func init() {
	Register(&KindInfo{Kind: "User", Plural: "users", Aliases: []string{"usr"}, New: func() Object { return &User{} }})
	Register(&KindInfo{Kind: "Token", Plural: "tokens", Aliases: []string{"tok"}, New: func() Object { return &Token{} }})
}

// Role is a named set of permissions. Four roles are built in
// (cluster-admin, admin, developer, viewer); Role objects add custom ones.
type Role struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     RoleSpec   `json:"spec"`
}

// GetMeta returns the Role's metadata.
func (r *Role) GetMeta() *ObjectMeta { return &r.Metadata }

// RoleSpec lists what the role allows.
type RoleSpec struct {
	Rules []Rule `json:"rules"`
}

// Rule allows verbs on resources ("*" matches any). A resource may name a
// subresource as "apps/scale"; "apps" alone does not grant subresources.
type Rule struct {
	Verbs     []string `json:"verbs"`
	Resources []string `json:"resources"`
}

// RoleBinding grants a role to a user in one namespace, or in every
// namespace (and for cluster-scoped resources) when Namespace is "*".
type RoleBinding struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta      `json:"metadata"`
	Spec     RoleBindingSpec `json:"spec"`
}

// GetMeta returns the RoleBinding's metadata.
func (r *RoleBinding) GetMeta() *ObjectMeta { return &r.Metadata }

// RoleBindingSpec names who gets which role where.
type RoleBindingSpec struct {
	User      string `json:"user"`
	Role      string `json:"role"`
	Namespace string `json:"namespace"`
}

// Validate checks a RoleBinding.
func (r *RoleBinding) Validate() FieldErrors {
	var errs FieldErrors
	if r.Spec.User == "" {
		errs.add("spec.user", "is required")
	}
	if r.Spec.Role == "" {
		errs.add("spec.role", "is required")
	}
	if r.Spec.Namespace != "*" {
		if msg := ValidateName(r.Spec.Namespace, 63); msg != "" {
			errs.add("spec.namespace", "%s (or * for every namespace)", msg)
		}
	}
	return errs
}

// Validate checks a Role.
func (r *Role) Validate() FieldErrors {
	var errs FieldErrors
	if len(r.Spec.Rules) == 0 {
		errs.add("spec.rules", "a role needs at least one rule")
	}
	for i, rule := range r.Spec.Rules {
		if len(rule.Verbs) == 0 {
			errs.add(fmt.Sprintf("spec.rules[%d].verbs", i), "is required")
		}
		if len(rule.Resources) == 0 {
			errs.add(fmt.Sprintf("spec.rules[%d].resources", i), "is required")
		}
	}
	return errs
}

func init() {
	Register(&KindInfo{Kind: "Role", Plural: "roles", New: func() Object { return &Role{} }})
	Register(&KindInfo{Kind: "RoleBinding", Plural: "rolebindings", Aliases: []string{"binding", "bindings", "rb"}, New: func() Object { return &RoleBinding{} }})
}

// JoinToken lets an agent join the cluster once and receive its node
// certificate. Only the hash of its secret is stored.
type JoinToken struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta    `json:"metadata"`
	Spec     JoinTokenSpec `json:"spec"`
}

// GetMeta returns the JoinToken's metadata.
func (j *JoinToken) GetMeta() *ObjectMeta { return &j.Metadata }

// JoinTokenSpec holds the token's hash and lifetime.
type JoinTokenSpec struct {
	Hash        string    `json:"hash,omitempty"`
	Expires     time.Time `json:"expires"`
	Description string    `json:"description,omitempty"`
}

func init() {
	Register(&KindInfo{Kind: "JoinToken", Plural: "jointokens", Aliases: []string{"jointoken", "jt"}, New: func() Object { return &JoinToken{} }})
}
