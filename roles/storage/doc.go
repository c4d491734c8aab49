// Package storage is the storage role's driver: a Ceph Pacific cluster from
// Debian's binaries, run under cloudd's supervisor without cephadm.
//
// The first storage node creates the cluster (fsid, monitor and admin keys,
// a monitor and a manager); the cluster-wide facts live in the driver's own
// tables of the cluster database (storage_config, storage_monitors,
// storage_osds). Monitors and standby managers run on up to
// storage.monitors_max nodes (storage nodes first, control nodes while there
// are fewer storage nodes). Every storage node makes one BlueStore OSD per
// disk of its plan; a "loop:8GiB" entry makes a sparse file below the
// driver's directory instead (file-backed: not for production). Pools come
// from the manifest; their replication follows the number of hosts with
// OSDs. Pools, health and capacity go through librados (go-ceph); only the
// mkfs of a monitor or an OSD runs a Ceph program.
package storage
