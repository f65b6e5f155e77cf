// Package promsd serves Prometheus' HTTP service discovery
// (http_sd_configs) over a binder: GET /v1/sd/prometheus[?type=T] answers
// a JSON array of target groups, one per registered instance, read from
// the binder's local memory as lookups are.
//
// Each group's one target is the instance's address:port; its labels are
// __meta_lieur_* labels, which Prometheus keeps for relabeling and drops
// before storing:
//
//	__meta_lieur_type          the service type
//	__meta_lieur_id            the instance id
//	__meta_lieur_address       the registered address
//	__meta_lieur_port          the registered port
//	__meta_lieur_health        passing, warning or critical (aggregate of the
//	                           instance's checks; warning for a stale lease)
//	__meta_lieur_tags          the tags in Consul's form: ",a,b," (",," for
//	                           none), so that a relabel regex .*,a,.* matches
//	                           a tag wherever it stands
//	__meta_lieur_binder        the id of the binder that answered
//	__meta_lieur_meta_<key>    one per meta pair
//
// Meta keys become label names as Prometheus' Consul discovery makes them:
// every character outside [a-zA-Z0-9_] becomes '_'. When two keys of one
// instance give the same name, the value of the key that sorts first
// (byte-wise) wins, so the answer does not depend on map order.
//
// Every instance is listed, critical ones included (as Consul's discovery
// does): drop them by relabeling on __meta_lieur_health if you wish.
//
// It knows a node only through the Binder interface it declares. Errors
// are JSON bodies {"error": "..."}; a node that refuses default reads
// answers 503, and Prometheus keeps the targets it last discovered.
package promsd
