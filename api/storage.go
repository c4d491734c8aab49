package api

// StorageDetails are the storage layer's own data (Layer.Details of the
// "storage" layer): the Ceph cluster as its monitors report it.
type StorageDetails struct {
	// Health is Ceph's verdict (HEALTH_OK, HEALTH_WARN, HEALTH_ERR);
	// Reasons are its health checks' messages, most severe first.
	Health  string   `json:"health"`
	Reasons []string `json:"reasons,omitempty"`
	FSID    string   `json:"fsid"`
	// Monitors are the monitors in the monmap; Quorum those in quorum.
	Monitors []string `json:"monitors"`
	Quorum   []string `json:"quorum"`
	// ManagerAvailable is true when an active manager runs.
	ManagerAvailable bool `json:"manager_available"`
	// PGs is the number of placement groups; PGsActiveClean how many of
	// them are active+clean with every copy their pool asks for (as the
	// manager last reported).
	PGs            int           `json:"pgs"`
	PGsActiveClean int           `json:"pgs_active_clean"`
	OSDs           []StorageOSD  `json:"osds"`
	Pools          []StoragePool `json:"pools"`
	TotalBytes     int64         `json:"total_bytes"`
	UsedBytes      int64         `json:"used_bytes"`
	AvailBytes     int64         `json:"avail_bytes"`
}

// StorageOSD is one OSD: the node and plan entry it was made from.
type StorageOSD struct {
	ID   int    `json:"id"`
	Node string `json:"node"`
	// Path is the plan entry: a device path or "loop:8GiB" for a file.
	Path       string `json:"path"`
	FileBacked bool   `json:"file_backed"`
	// Note is "file-backed: not for production" for a file-backed OSD.
	Note      string `json:"note,omitempty"`
	SizeBytes int64  `json:"size_bytes,omitempty"`
	Up        bool   `json:"up"`
	In        bool   `json:"in"`
	// State is the driver's record: creating, ready or draining.
	State string `json:"state"`
}

// StoragePool is one Ceph pool.
type StoragePool struct {
	Name string `json:"name"`
	// Purpose is the manifest's purpose of the pool (instances, images...), if any.
	Purpose       string `json:"purpose,omitempty"`
	Size          int    `json:"size"`
	MinSize       int    `json:"min_size"`
	FailureDomain string `json:"failure_domain"`
	Objects       int64  `json:"objects"`
	StoredBytes   int64  `json:"stored_bytes"`
	UsedBytes     int64  `json:"used_bytes"`
}

// StorageDiskAdd asks for an OSD on a disk of a storage node after it joined
// (POST /1.0/storage/disks).
type StorageDiskAdd struct {
	Node string `json:"node"`
	// Path is a /dev path, or "loop:SIZE" (e.g. loop:8GiB) for a
	// file-backed OSD (not for production).
	Path string `json:"path"`
	// Wipe is the consent to erase a signature found on the disk.
	Wipe bool `json:"wipe,omitempty"`
}
