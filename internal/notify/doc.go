// Package notify delivers alert and deploy notifications to the webhooks
// that Notifier objects name: a generic JSON webhook or a Slack-compatible
// incoming webhook.
//
// It owns the delivery path: target selection (the rule's notifiers or
// every notifier of the namespace that wants that kind of event), one
// bounded queue and one worker per notifier, retries with capped and
// jittered exponential backoff, per-attempt timeouts, the payload formats,
// the SSRF guard on outbound connections, Notifier status (delivered,
// failed, last error) and the gantry_notifications_total metric.
//
// It must never block its callers: Send only enqueues, a full queue drops
// its oldest message (counted), and a dead endpoint only ever occupies its
// own notifier's worker. It does not decide when something is worth
// telling (package alert does, and the rollout controller's events do), and
// it never logs or reports a webhook URL's path or query, because chat
// webhook URLs are credentials.
//
// # Pending messages
//
// Every queued message is also written to the store (the outbox, under
// <prefix>notify-outbox/<namespace>/<notifier>/) before it is queued,
// and deleted once it is delivered or given up. Run queues what an
// earlier run left, oldest first, before anything new, so a restart
// while an endpoint is down or a message waits in its queue loses
// nothing; a message whose delivery was cut short is sent again with the
// same X-Gantry-Delivery, so delivery is at least once. A notifier's
// entries are bounded with its queue (QueueSize, plus the one in flight).
// A message still in Send's inbox, or one whose entry could not be
// written, is kept in memory only.
//
// # Outbound address policy
//
// Notifier URLs are written by tenants, so every connection is checked at
// connect time, after DNS resolution (a name that resolves to a public
// address at validation and to 127.0.0.1 later is still refused).
// Refused unless the namespace's policy sets allowPrivateTargets (a
// cluster admin's decision): loopback, link-local (169.254.0.0/16, which
// holds cloud metadata services, and fe80::/10), private (10/8,
// 172.16/12, 192.168/16, fc00::/7), shared address space (100.64/10),
// unspecified, "this network" (0/8), multicast and broadcast, and the API
// server's own addresses. Redirects are not followed and HTTP proxies
// from the environment are not used, so the checked address is the one
// that is reached.
//
// # Generic webhook payload (type: webhook)
//
// A POST with Content-Type application/json and the header
// X-Gantry-Delivery (the message ID, stable across retries so that a
// receiver can drop duplicates), plus the notifier's headers:
//
//	{
//	  "version":   "1",
//	  "id":        "3f6c…",            // stable across retries of one message
//	  "kind":      "alert",            // alert | deploy | test
//	  "status":    "firing",           // alert: firing | resolved
//	                                   // deploy: started | succeeded | failed | rolled-back
//	                                   // test: test
//	  "namespace": "default",
//	  "rule":      "web-crashloop",    // alerts: the AlertRule
//	  "condition": "restarts",         // alerts: cpu | memory | restarts | not-ready | node-not-ready
//	  "severity":  "critical",         // info | warning | critical
//	  "app":       "web",              // when the event concerns one App
//	  "revision":  4,                  // deploys: the App revision
//	  "subjects":  ["instance/web-x7k2p"],
//	  "value":     5,                  // alerts: the measured value (percent, restarts, count)
//	  "threshold": 3,                  // alerts: the rule's threshold
//	  "message":   "instance web-x7k2p restarted 5 times in 5m0s (threshold 3)",
//	  "since":     "2025-01-02T15:04:05Z", // alerts: when the current state began
//	  "time":      "2025-01-02T15:04:05Z", // when the notification was made
//	  "cluster":   "https://gantry.example.com:7443"
//	}
//
// Empty fields are omitted. A 2xx answer is success; 408, 425, 429 and
// 5xx answers and network errors are retried (Retry-After is honoured up
// to the backoff cap); any other answer fails the message at once.
//
// # Slack payload (type: slack)
//
// The message follows Slack's incoming-webhook format: "text" always
// carries the whole message (it is what notifications and clients without
// attachment support show), and one legacy attachment adds the colour bar
// (danger for firing or failed, good for resolved or succeeded) and the
// details as fields. Attachments rather than Block Kit blocks because the
// Slack-compatible receivers (Mattermost, Rocket.Chat, Discord's /slack
// endpoint) render attachments but not blocks.
package notify
