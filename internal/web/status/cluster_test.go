package status

import (
	"net/http"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/scrape"
)

// The cluster section shows the replica, live replicas, slots held with
// their epochs and whether it is degraded; a single replica has none.
func TestClusterSection(t *testing.T) {
	snap := func() *scrape.Snapshot { return &scrape.Snapshot{Taken: fixedNow} }
	for _, tc := range []struct {
		name    string
		cluster *Cluster
		want    []string
		absent  []string
	}{
		{"single replica", nil, nil, []string{`id="cluster"`}},
		{"holding", &Cluster{ReplicaID: "fleetd-0", Replicas: 3, Slots: 64, Copri: true,
			Held: []Lease{{Slot: 3, Epoch: 7}, {Slot: 9, Epoch: 1}}},
			[]string{`id="cluster"`, "leases held", "<code>fleetd-0</code>", "live replicas</span> 3", "slots held</span> 2 of 64", "holds the COPRI slot", "3 (7), 9 (1)"},
			[]string{"degraded"}},
		{"degraded", &Cluster{ReplicaID: "fleetd-1", Replicas: 2, Slots: 64, Degraded: true, Held: []Lease{{Slot: 1, Epoch: 2}}},
			[]string{"degraded", "remediation stopped"}, []string{"COPRI slot"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page := get(newTestHandler(t, Options{Snapshot: snap, Cluster: func() *Cluster { return tc.cluster }}), http.MethodGet, "/").Body.String()
			for _, s := range tc.want {
				if !strings.Contains(page, s) {
					t.Errorf("page lacks %q", s)
				}
			}
			for _, s := range tc.absent {
				if strings.Contains(page, s) {
					t.Errorf("page has %q", s)
				}
			}
		})
	}
}
