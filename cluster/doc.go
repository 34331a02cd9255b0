// Package cluster starts a checkin node's actor system, its remote endpoint
// and its membership in the protoactor cluster, registers the grain kinds
// the node hosts, and places grains on members.
//
// Guarantees: the node listens only on the configured address; protoactor's
// logs go to the node's zap logger; Ready reports whether this node is a
// member of the cluster topology, so the edge can refuse traffic until it is.
// Members that see the same topology agree on the owner of every grain
// identity, and an owner activates an identity at most once (a member
// activates only what it owns by its view as it activates); a member hands
// over the grains it no longer owns when the topology changes (HandOver: a
// grain answers the calls it holds, then stops), and a member that stops
// with others present drains first: it stays a member, owning nothing,
// until its grains have stopped, so their answers still reach the callers.
// Broadcast reaches
// the other members' event streams, best effort. Evicted tells a node that
// the cluster removed it (its lease ran out, or more than half of the
// members reported that they could not reach it: Silent, evict.go) and
// that it cannot rejoin without a restart. With Config.TLS the actor
// endpoint speaks mutual TLS only; with EtcdConfig.TLS and credentials, so
// does the etcd client.
//
// Membership providers: "standalone" (default) makes a one-node cluster that
// needs no external server; "etcd" registers each member in etcd under a
// lease (EtcdConfig.LeaseTTL) and watches the others, so members join,
// leave and fail over while the cluster runs. A member renews its lease
// through an etcd outage, so an etcd that restarts removes nobody, and
// registers again under the same identity when an etcd that stalled for
// longer than the lease expired every member's lease at once.
package cluster
