// Package cluster starts a checkin node's actor system, its remote endpoint
// and its membership in the protoactor cluster, and registers the grain
// kinds the node hosts.
//
// Guarantees: the node listens only on the configured address; protoactor's
// logs go to the node's zap logger; Ready reports whether this node is a
// member of the cluster topology, so the edge can refuse traffic until it is.
//
// Membership providers: "standalone" (default) makes a one-node cluster that
// needs no external server.
package cluster
