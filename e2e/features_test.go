package e2e

// clusterFeatureArgs are the listener flags of the parts of gantry up that
// bind ports, each on a port of its own so that clusters never collide.
func clusterFeatureArgs(c *Cluster) []string {
	return []string{"--dns-addr", c.DNSAddr, "--registry-addr", c.RegAddr, "--ingress-addr", c.HTTPAddr, "--agent-metrics-addr", "127.0.0.1:0"}
}
