package status

// Cluster is this replica's view of the slot leases, when several replicas
// share a PostgreSQL ledger.
type Cluster struct {
	ReplicaID string
	// Replicas is the number of live replicas at the last renewal.
	Replicas int
	Slots    int
	// Held are the location slots this replica holds, by slot.
	Held []Lease
	// Copri is whether this replica holds the COPRI slot (reports copri_*).
	Copri bool
	// Degraded: the last lease renewal failed; monitoring of the held slots
	// goes on, remediation is stopped.
	Degraded bool
}

// Lease is one held slot and its fencing epoch.
type Lease struct {
	Slot  int
	Epoch int64
}
