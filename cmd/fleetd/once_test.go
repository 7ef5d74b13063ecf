package main

import (
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/remediate/policy"
	"github.com/fleetd/fleetd/internal/scrape"
)

// TestPageReason: once pages for dead devices and for recoverable faults
// that remediation cannot or may not touch, as the gate table says.
func TestPageReason(t *testing.T) {
	now := time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)
	p := config.Default().Remediation
	p.Exclude = config.Exclude{Locations: []string{"L9"}, DeviceTypes: []string{"BIKE_HOUSE_DOOR"}, Tags: []string{config.NoAutoRemediationTag}}
	rules := policy.Compile(p)
	syncable := map[string]string{bikeep.CmdSyncDevice: "/c"}
	tests := []struct {
		name string
		loc  string
		dev  *bikeep.Device // nil: not in the snapshot
		kind health.FaultKind
		dead bool
		want string
	}{
		{"dead", "L1", &bikeep.Device{Commands: syncable}, health.Dead, true, "dead"},
		{"long dead tickets, does not page", "L1", &bikeep.Device{Commands: syncable}, health.LongDead, true, ""},
		{"hardware fault of a dead device", "L1", &bikeep.Device{Commands: syncable}, health.HardwareError, true, ""},
		{"remediation will try", "L1", &bikeep.Device{Type: bikeep.TypeLocker, Commands: syncable}, health.Unhealthy, false, ""},
		{"device not in the snapshot", "L1", nil, health.Unhealthy, false, ""},
		{"no sync-device", "L1", &bikeep.Device{Commands: map[string]string{bikeep.CmdLock: "/c"}}, health.Unhealthy, false, "sync-device unavailable"},
		{"asleep out of reach", "L1", &bikeep.Device{Commands: syncable, SleepState: bikeep.SleepDeep, PowerSaveStrategy: bikeep.PowerLocalWakeup}, health.HardwareError, false, "sync-device unavailable"},
		{"unsupported and excluded", "L9", &bikeep.Device{}, health.Unhealthy, false, "sync-device unavailable"},
		{"excluded location", "L9", &bikeep.Device{Commands: syncable}, health.Unhealthy, false, "excluded from remediation"},
		{"excluded type", "L1", &bikeep.Device{Type: bikeep.TypeBikeHouseDoor, Commands: syncable}, health.LockMismatch, false, "excluded from remediation"},
		{"excluded tag", "L1", &bikeep.Device{Commands: syncable, Tags: []string{"a", config.NoAutoRemediationTag}}, health.Unhealthy, false, "excluded from remediation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap := &scrape.Snapshot{Locations: []scrape.LocationStatus{{ID: tc.loc, Up: true}}}
			f := health.Fault{Kind: tc.kind, DeviceID: "d1", LocationID: tc.loc, Recoverable: tc.kind.RecoverableKind() && !tc.dead,
				FirstSeen: now.Add(-time.Hour), Walks: 5}
			if tc.dev != nil {
				tc.dev.ID = "d1"
				f.DeviceType = tc.dev.Type
				snap.Locations[0].Devices = []bikeep.Device{*tc.dev}
			}
			if got := pageReason(snap, f, rules, now); got != tc.want {
				t.Fatalf("pageReason = %q, want %q", got, tc.want)
			}
		})
	}
}
