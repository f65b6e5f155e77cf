package wire

// The backup endpoints: GET /v1/snapshot answers a backup file, PUT
// /v1/snapshot takes one (its format: binder/backupfile.go).

// ContentTypeSnapshot is the media type of a backup file, in both
// directions. It is not one a browser may send across origins without a
// preflight, so accepting it keeps the API's CSRF protection (see
// docs/api.md, Request bodies).
const ContentTypeSnapshot = "application/octet-stream"

// HeaderLeaderOnly (internal) on a backup or restore request: answer it
// only if this node leads (503 not_leader otherwise), never forward it. A
// follower sends it when it forwards to the leader, so that a request
// never travels between two nodes that each think the other leads.
const HeaderLeaderOnly = "X-Lieur-Leader-Only"

// SnapshotRestoreResponse answers PUT /v1/snapshot.
type SnapshotRestoreResponse struct {
	// Index is the Raft index of the restore: every restored instance is
	// registered at it, and a binder whose applied_index (GET /v1/status)
	// reaches it holds the restored table.
	Index uint64 `json:"index"`
	// Services and Types count the restored table.
	Services int `json:"services"`
	Types    int `json:"types"`
	// BackupIndex and BackupTerm are the file's: the index and term the
	// backup reflects on the cluster it was taken from.
	BackupIndex uint64 `json:"backup_index"`
	BackupTerm  uint64 `json:"backup_term"`
}
