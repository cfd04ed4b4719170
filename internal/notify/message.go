package notify

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Message kinds.
const (
	KindAlert  = "alert"
	KindDeploy = "deploy"
	KindTest   = "test"
)

// Message statuses.
const (
	StatusFiring     = "firing"
	StatusResolved   = "resolved"
	StatusStarted    = "started"
	StatusSucceeded  = "succeeded"
	StatusFailed     = "failed"
	StatusRolledBack = "rolled-back"
	StatusTest       = "test"
)

// Notifier event selectors (NotifierSpec.Events).
const (
	EventsAlerts  = "alerts"
	EventsDeploys = "deploys"
)

// Message is one notification, independent of the format it is delivered
// in. The JSON field names are the generic webhook's (see the package
// documentation).
type Message struct {
	Version   string   `json:"version"`
	ID        string   `json:"id"`
	Kind      string   `json:"kind"`
	Status    string   `json:"status"`
	Namespace string   `json:"namespace"`
	Rule      string   `json:"rule,omitempty"`
	Condition string   `json:"condition,omitempty"`
	Severity  string   `json:"severity,omitempty"`
	App       string   `json:"app,omitempty"`
	Revision  int64    `json:"revision,omitempty"`
	Subjects  []string `json:"subjects,omitempty"`
	Value     float64  `json:"value,omitempty"`
	Threshold float64  `json:"threshold,omitempty"`
	Message   string   `json:"message"`
	// Description is the AlertRule's note for people (what to check,
	// a runbook link), as the rule says it.
	Description string     `json:"description,omitempty"`
	Since       *time.Time `json:"since,omitempty"`
	Time        time.Time  `json:"time"`
	Cluster     string     `json:"cluster,omitempty"`
}

// PayloadVersion is the generic webhook schema version.
const PayloadVersion = "1"

// complete fills in what the sender may leave out: version, time, ID
// and the cluster URL.
func (m *Message) complete(now time.Time, cluster string) {
	m.Version = PayloadVersion
	if m.Time.IsZero() {
		m.Time = now.UTC()
	}
	if m.Cluster == "" {
		m.Cluster = cluster
	}
	if m.ID == "" {
		// The ID names the event, not the delivery: the same transition
		// evaluated twice (or retried) gets the same ID.
		h := sha256.New()
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00%d\x00", m.Kind, m.Status, m.Namespace, m.Rule, m.App, m.Revision)
		if m.Since != nil {
			h.Write([]byte(m.Since.UTC().Format(time.RFC3339Nano)))
		} else {
			h.Write([]byte(m.Time.UTC().Format(time.RFC3339Nano)))
		}
		m.ID = hex.EncodeToString(h.Sum(nil)[:12])
	}
}

// wants reports whether a notifier that selects events gets messages of
// this kind. Tests always go through.
func wants(spec v1.NotifierSpec, kind string) bool {
	if kind == KindTest || len(spec.Events) == 0 {
		return true
	}
	want := EventsAlerts
	if kind == KindDeploy {
		want = EventsDeploys
	}
	for _, e := range spec.Events {
		if e == want {
			return true
		}
	}
	return false
}

// Headline is the one-line summary used as Slack's text and in logs.
func (m *Message) Headline() string {
	switch m.Kind {
	case KindAlert:
		word := "FIRING"
		if m.Status == StatusResolved {
			word = "RESOLVED"
		}
		sev := ""
		if m.Severity != "" && m.Status != StatusResolved {
			sev = " (" + m.Severity + ")"
		}
		return fmt.Sprintf("[%s] %s/%s%s: %s", word, m.Namespace, m.Rule, sev, m.Message)
	case KindDeploy:
		target := m.Namespace + "/" + m.App
		if m.Revision > 0 {
			target += " revision " + strconv.FormatInt(m.Revision, 10)
		}
		return fmt.Sprintf("[DEPLOY %s] %s: %s", strings.ToUpper(m.Status), target, m.Message)
	default:
		return fmt.Sprintf("[TEST] %s", m.Message)
	}
}

// webhookBody is the generic JSON payload: the message itself.
func webhookBody(m *Message) ([]byte, error) { return json.Marshal(m) }

type slackPayload struct {
	Text        string            `json:"text"`
	Attachments []slackAttachment `json:"attachments,omitempty"`
}

type slackAttachment struct {
	Fallback  string       `json:"fallback"`
	Color     string       `json:"color,omitempty"`
	Title     string       `json:"title,omitempty"`
	TitleLink string       `json:"title_link,omitempty"`
	Text      string       `json:"text,omitempty"`
	Fields    []slackField `json:"fields,omitempty"`
	Footer    string       `json:"footer,omitempty"`
	TS        int64        `json:"ts,omitempty"`
}

type slackField struct {
	Title string `json:"title"`
	Value string `json:"value"`
	Short bool   `json:"short"`
}

// slackEscape escapes the three characters Slack's mrkdwn treats as
// control characters in text.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func slackColor(m *Message) string {
	switch m.Status {
	case StatusFiring, StatusFailed, StatusRolledBack:
		if m.Severity == "info" {
			return "warning"
		}
		return "danger"
	case StatusResolved, StatusSucceeded:
		return "good"
	}
	return "#439FE0"
}

// slackBody renders m as a Slack incoming-webhook message.
func slackBody(m *Message) ([]byte, error) {
	head := slackEscape(m.Headline())
	a := slackAttachment{Fallback: head, Color: slackColor(m), Text: slackEscape(m.Message), Footer: "gantry", TS: m.Time.Unix()}
	if m.Cluster != "" && (strings.HasPrefix(m.Cluster, "https://") || strings.HasPrefix(m.Cluster, "http://")) {
		a.TitleLink = m.Cluster
	}
	short := func(title, value string) {
		if value != "" {
			a.Fields = append(a.Fields, slackField{Title: title, Value: slackEscape(value), Short: true})
		}
	}
	switch m.Kind {
	case KindAlert:
		a.Title = fmt.Sprintf("%s %s", m.Rule, m.Status)
		short("Namespace", m.Namespace)
		short("Condition", m.Condition)
		short("Severity", m.Severity)
		short("App", m.App)
		short("Value", strconv.FormatFloat(m.Value, 'f', -1, 64))
		short("Threshold", strconv.FormatFloat(m.Threshold, 'f', -1, 64))
		if m.Since != nil {
			short("Since", m.Since.UTC().Format(time.RFC3339))
		}
		if m.Description != "" {
			a.Fields = append(a.Fields, slackField{Title: "Description", Value: slackEscape(m.Description)})
		}
		if len(m.Subjects) > 0 {
			subj := m.Subjects
			more := ""
			if len(subj) > 10 {
				more = fmt.Sprintf(" and %d more", len(subj)-10)
				subj = subj[:10]
			}
			a.Fields = append(a.Fields, slackField{Title: "Subjects", Value: slackEscape(strings.Join(subj, ", ") + more)})
		}
	case KindDeploy:
		a.Title = fmt.Sprintf("deploy of %s %s", m.App, m.Status)
		short("Namespace", m.Namespace)
		short("App", m.App)
		if m.Revision > 0 {
			short("Revision", strconv.FormatInt(m.Revision, 10))
		}
	default:
		a.Title = "test notification"
		short("Namespace", m.Namespace)
	}
	return json.Marshal(slackPayload{Text: head, Attachments: []slackAttachment{a}})
}

// body renders m in the format of a notifier type.
func body(typ string, m *Message) ([]byte, error) {
	switch typ {
	case v1.NotifierSlack:
		return slackBody(m)
	case v1.NotifierWebhook:
		return webhookBody(m)
	}
	return nil, fmt.Errorf("%w: notifier type %q (want webhook or slack)", v1.ErrInvalid, typ)
}
