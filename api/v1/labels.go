package v1

import (
	"fmt"
	"strings"
)

// Selector matches objects by their labels: "app=web,tier!=db,canary".
type Selector []Requirement

// Requirement is one term of a Selector.
type Requirement struct {
	Key   string
	Op    string // "=", "!=", "exists", "!exists"
	Value string
}

// ParseSelector parses a comma-separated selector. The empty string
// matches everything.
func ParseSelector(s string) (Selector, error) {
	var sel Selector
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	for _, term := range strings.Split(s, ",") {
		term = strings.TrimSpace(term)
		var r Requirement
		switch {
		case strings.Contains(term, "!="):
			k, v, _ := strings.Cut(term, "!=")
			r = Requirement{Key: strings.TrimSpace(k), Op: OpNotEqual, Value: strings.TrimSpace(v)}
		case strings.Contains(term, "=="):
			k, v, _ := strings.Cut(term, "==")
			r = Requirement{Key: strings.TrimSpace(k), Op: OpEqual, Value: strings.TrimSpace(v)}
		case strings.Contains(term, "="):
			k, v, _ := strings.Cut(term, "=")
			r = Requirement{Key: strings.TrimSpace(k), Op: OpEqual, Value: strings.TrimSpace(v)}
		case strings.HasPrefix(term, "!"):
			r = Requirement{Key: strings.TrimSpace(term[1:]), Op: OpNotExists}
		default:
			r = Requirement{Key: term, Op: OpExists}
		}
		if r.Key == "" || !labelKey.MatchString(r.Key) {
			return nil, fmt.Errorf("selector term %q: want key=value, key!=value, key or !key", term)
		}
		if !labelValue.MatchString(r.Value) {
			return nil, fmt.Errorf("selector term %q: invalid label value", term)
		}
		sel = append(sel, r)
	}
	return sel, nil
}

// Matches reports whether labels satisfy every requirement.
func (s Selector) Matches(labels map[string]string) bool {
	for _, r := range s {
		if !(Constraint{Label: r.Key, Op: r.Op, Value: r.Value}).Matches(labels) {
			return false
		}
	}
	return true
}

func (s Selector) String() string {
	parts := make([]string, len(s))
	for i, r := range s {
		switch r.Op {
		case OpExists:
			parts[i] = r.Key
		case OpNotExists:
			parts[i] = "!" + r.Key
		default:
			parts[i] = r.Key + r.Op + r.Value
		}
	}
	return strings.Join(parts, ",")
}
