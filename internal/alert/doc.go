// Package alert evaluates AlertRule objects: every few seconds, and when
// an agent reports new samples, it checks each rule's condition against
// the metrics window and the current Apps, Instances and Nodes, moves the
// rule through inactive → pending → firing → inactive (resolved), writes
// the rule's status, records AlertFiring and AlertResolved events and
// hands a notification to the notifier on each firing and resolved
// transition.
//
// The rule's stored status is the state machine's memory, so a restarted
// or newly elected server continues where the last one stopped instead of
// firing everything again. The usage samples and restart history the
// instance conditions read are in memory, though: until a restarted
// evaluator has seen enough of them (a minute, or a restarts rule's
// window), it leaves a firing or pending rule as stored rather than take
// their absence for the condition's end. A transition is notified only after its status
// write succeeded with compare-and-swap against the revision the
// evaluator read: two evaluators racing over the same rule notify once.
//
// It must not deliver anything itself (package notify does, without ever
// blocking the evaluator), must not write a rule's spec, and must not
// rewrite a status just because time passed: lastEvaluated and the
// measured value are refreshed at most every StatusEvery.
//
// Conditions:
//
//   - cpu, memory: an instance's newest sample (not older than three
//     sampling intervals) is above threshold percent of its CPU limit
//     (or, without one, its request; the message says which) or memory
//     limit. Instances without a limit are skipped.
//   - restarts: an instance's cumulative restart count grew by at least
//     threshold within window. The count at the start of the window comes
//     from the metrics window and from the instance statuses the
//     evaluator has seen; an instance created inside the window started
//     at zero.
//   - not-ready: an App has fewer ready instances than it wants.
//   - node-not-ready: a node is NotReady (every rule sees every node).
//
// Instances being deleted are not counted: they are on their way out.
package alert
