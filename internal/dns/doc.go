// Package dns is Gantry's DNS server: authoritative for the cluster domain
// (service discovery) and for the apps domain (nice hostnames that lead to
// the ingress), and a forwarder to the host's resolvers for every other
// name, so that it can be the only resolver a container needs.
//
// Names in the cluster domain (default gantry.internal):
//
//	APP.NS.svc.DOMAIN                      A/AAAA of the app's ready instances
//	_PORT._tcp.APP.NS.svc.DOMAIN           SRV, one per ready instance (_udp for udp ports)
//	INSTANCE.APP.NS.svc.DOMAIN             A/AAAA of one instance, ready or not
//	DOMAIN                                 SOA and NS
//
// Names in the apps domain (default localhost), and every route host that
// an App declares, answer A/AAAA with the load balancer's addresses, and
// NODATA for every other type.
//
// The package owns the mapping from a discovery.Snapshot to DNS answers
// and the wire behaviour (NXDOMAIN vs NODATA, EDNS0, truncation, TCP,
// forwarding). It must not decide who gets traffic: that rule lives in
// package discovery, and this package serves exactly the Ready and All
// endpoint lists it is given. It does no store I/O and keeps no state
// beyond an index derived from the newest snapshot.
package dns
