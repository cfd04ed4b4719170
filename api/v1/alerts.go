package v1

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Alert conditions.
const (
	// AlertCPU fires when an instance uses more than Threshold percent of
	// its CPU limit (or request, without a limit).
	AlertCPU = "cpu"
	// AlertMemory fires above Threshold percent of the memory limit.
	AlertMemory = "memory"
	// AlertRestarts fires when an instance's restarts grow by at least
	// Threshold within Window.
	AlertRestarts = "restarts"
	// AlertNotReady fires while an App has fewer ready instances than it
	// wants.
	AlertNotReady = "not-ready"
	// AlertNodeNotReady fires while a node is NotReady.
	AlertNodeNotReady = "node-not-ready"
)

// Alert states.
const (
	AlertInactive = "inactive"
	AlertPending  = "pending"
	AlertFiring   = "firing"
)

// AlertRule is a condition over metrics and states that notifies when it
// holds for a while.
type AlertRule struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta      `json:"metadata"`
	Spec     AlertRuleSpec   `json:"spec"`
	Status   AlertRuleStatus `json:"status,omitzero"`
}

// GetMeta returns the AlertRule's metadata.
func (a *AlertRule) GetMeta() *ObjectMeta { return &a.Metadata }

// AlertRuleSpec says when to fire.
type AlertRuleSpec struct {
	Condition string `json:"condition"`
	// App limits the rule to one App; empty means every App of the
	// namespace (ignored for node-not-ready).
	App       string  `json:"app,omitempty"`
	Threshold float64 `json:"threshold,omitempty"`
	// Window is the look-back of rate-like conditions (restarts).
	Window Duration `json:"window,omitempty"`
	// For is how long the condition must hold before the alert fires.
	For      Duration `json:"for,omitempty"`
	Severity string   `json:"severity,omitempty"`
	// Notifiers names the Notifiers to tell; empty means every one of
	// the namespace.
	Notifiers   []string `json:"notifiers,omitempty"`
	Description string   `json:"description,omitempty"`
}

// AlertRuleStatus is the evaluator's view.
type AlertRuleStatus struct {
	State string     `json:"state,omitempty"`
	Since *time.Time `json:"since,omitempty"`
	// Subjects are the objects the condition holds for, e.g.
	// "instance/web-x7k2p".
	Subjects []string `json:"subjects,omitempty"`
	// FiredSubjects are, while the rule fires, every subject the
	// condition has held for since it fired: the resolved notification
	// names them all, since the firing ones named them.
	FiredSubjects []string   `json:"firedSubjects,omitempty"`
	Value         float64    `json:"value,omitempty"`
	Message       string     `json:"message,omitempty"`
	LastEvaluated *time.Time `json:"lastEvaluated,omitempty"`
}

// Validate checks an AlertRule.
func (a *AlertRule) Validate() FieldErrors {
	var errs FieldErrors
	s := a.Spec
	switch s.Condition {
	case AlertCPU, AlertMemory:
		if s.Threshold <= 0 || s.Threshold > 1000 {
			errs.add("spec.threshold", "a percentage between 0 and 1000 is required for %s", s.Condition)
		}
	case AlertRestarts:
		if s.Threshold < 1 {
			errs.add("spec.threshold", "the number of restarts (at least 1) is required")
		}
		if s.Window <= 0 {
			errs.add("spec.window", "is required for restarts, e.g. 5m")
		}
	case AlertNotReady, AlertNodeNotReady:
	default:
		errs.add("spec.condition", "must be one of cpu, memory, restarts, not-ready, node-not-ready (got %q)", s.Condition)
	}
	if s.App != "" {
		if msg := ValidateName(s.App, MaxAppName); msg != "" {
			errs.add("spec.app", "%s", msg)
		}
	}
	if s.For < 0 || s.Window < 0 {
		errs.add("spec", "for and window must not be negative")
	}
	switch s.Severity {
	case "", "info", "warning", "critical":
	default:
		errs.add("spec.severity", "must be info, warning or critical")
	}
	seen := map[string]int{}
	for i, n := range s.Notifiers {
		if msg := ValidateName(n, 63); msg != "" {
			errs.add(fmt.Sprintf("spec.notifiers[%d]", i), "%s", msg)
		}
		if j, dup := seen[n]; dup {
			errs.add(fmt.Sprintf("spec.notifiers[%d]", i), "%q is already named by spec.notifiers[%d]", n, j)
		}
		seen[n] = i
	}
	return errs
}

// Notifier types.
const (
	NotifierWebhook = "webhook"
	NotifierSlack   = "slack"
)

// Notifier delivers alerts and deploy events to a chat or a webhook.
type Notifier struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta     `json:"metadata"`
	Spec     NotifierSpec   `json:"spec"`
	Status   NotifierStatus `json:"status,omitzero"`
}

// GetMeta returns the Notifier's metadata.
func (n *Notifier) GetMeta() *ObjectMeta { return &n.Metadata }

// NotifierSpec says where and what to deliver.
type NotifierSpec struct {
	// Type is webhook (generic JSON) or slack (Slack-compatible incoming
	// webhook).
	Type string `json:"type"`
	URL  string `json:"url,omitempty"`
	// URLFrom reads the URL from a Secret key instead (chat webhook URLs
	// are credentials).
	URLFrom *SecretRef `json:"urlFrom,omitempty"`
	// Events selects what is sent: "alerts", "deploys" (started,
	// succeeded, failed, rolled back). Empty means both.
	Events  []string          `json:"events,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
}

// NotifierStatus records deliveries.
type NotifierStatus struct {
	Delivered    int        `json:"delivered,omitempty"`
	Failed       int        `json:"failed,omitempty"`
	LastDelivery *time.Time `json:"lastDelivery,omitempty"`
	LastError    string     `json:"lastError,omitempty"`
}

// Validate checks a Notifier.
func (n *Notifier) Validate() FieldErrors {
	var errs FieldErrors
	s := n.Spec
	switch s.Type {
	case NotifierWebhook, NotifierSlack:
	default:
		errs.add("spec.type", "must be webhook or slack (got %q)", s.Type)
	}
	switch {
	case s.URL == "" && s.URLFrom == nil:
		errs.add("spec.url", "is required (or urlFrom a secret)")
	case s.URL != "" && s.URLFrom != nil:
		errs.add("spec", "set url or urlFrom, not both")
	case s.URL != "":
		u, err := url.Parse(s.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs.add("spec.url", "must be an http or https URL")
		}
	default:
		// Checked now, not at the first delivery.
		if msg := ValidateName(s.URLFrom.Name, 63); msg != "" {
			errs.add("spec.urlFrom.name", "the Secret's name %s", msg)
		}
		if k := s.URLFrom.Key; k == "" {
			errs.add("spec.urlFrom.key", "is required: the key of the Secret that holds the URL")
		} else if len(k) > 253 || !secretKey.MatchString(k) || k == "." || k == ".." {
			errs.add("spec.urlFrom.key", "%q is no Secret key: keys are letters, digits, '.', '_' and '-'", k)
		}
	}
	for i, e := range s.Events {
		if e != "alerts" && e != "deploys" {
			errs.add(fmt.Sprintf("spec.events[%d]", i), "must be alerts or deploys")
		}
	}
	canon := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(s.Headers)) {
		f := "spec.headers[" + strconv.Quote(k) + "]"
		ck := http.CanonicalHeaderKey(k)
		first, dup := canon[ck]
		if !dup {
			canon[ck] = k
		}
		switch {
		case dup:
			errs.add(f, "names the same header as %q (header names ignore case): keep one", first)
		case !httpguts.ValidHeaderFieldName(k):
			errs.add(f, "is not a valid header name (letters, digits and !#$%%&'*+-.^_`|~ only)")
		case !httpguts.ValidHeaderFieldValue(s.Headers[k]):
			errs.add(f, "the value holds a control character (a line break?)")
		case notifierOwnHeaders[http.CanonicalHeaderKey(k)]:
			errs.add(f, "is set by the delivery itself and cannot be given")
		}
	}
	return errs
}

// notifierOwnHeaders are the headers a delivery sets, or that describe
// the connection rather than the message.
var notifierOwnHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Content-Type": true, "Transfer-Encoding": true, "Connection": true,
	"Keep-Alive": true, "Proxy-Connection": true, "Te": true, "Trailer": true, "Upgrade": true,
	"User-Agent": true, "X-Gantry-Delivery": true, "X-Gantry-Event": true,
}

func init() {
	Register(&KindInfo{Kind: "AlertRule", Plural: "alertrules", Aliases: []string{"alert", "alerts", "alertrule"}, Namespaced: true, New: func() Object { return &AlertRule{} }})
	Register(&KindInfo{Kind: "Notifier", Plural: "notifiers", Aliases: []string{"notifier"}, Namespaced: true, New: func() Object { return &Notifier{} }})
}
