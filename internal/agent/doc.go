// Package agent is the node agent: it registers its Node, keeps the node's
// heartbeat lease alive, watches the Instances bound to the node, and makes
// real containers match them — pulling images, attaching networks,
// starting, probing, restarting on failure with back-off, draining and
// stopping — and reports every instance's status back.
//
// The agent talks to the cluster only through the API (with its node
// credential), never to etcd, so the same code runs inside `gantry up` and
// on a remote machine. Containers carry labels naming their instance, so an
// agent that restarts adopts what is already running instead of restarting
// it.
package agent
