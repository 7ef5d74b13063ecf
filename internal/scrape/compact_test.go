package scrape

import (
	"reflect"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/health"
)

// The compact copy must classify exactly like the full record and keep
// every field fleetd reads.
func TestCompactKeepsWhatFleetdReads(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	rssi := 1.0
	full := bikeep.Device{
		WifiRSSI: &rssi, Code: "C1", Nr: "FR-1", Heartbeat: "sim", SleepState: bikeep.SleepDeep,
		Type: bikeep.TypeLocker, HasOTPSupport: true, PriceList: &bikeep.Ref{ID: "p", URI: "u"}, Alias: "FR-1", ID: "d1",
		State:       &bikeep.DeviceState{Value: bikeep.StateLocking, ChangedAt: bikeep.Time{Time: now.Add(-time.Hour)}, TimeoutAt: bikeep.Time{Time: now.Add(-time.Minute)}},
		HeartbeatV2: &bikeep.HeartbeatV2{Health: bikeep.HealthUnhealthy, SentAt: bikeep.Time{Time: now}},
		Commands:    map[string]string{"sync-device": "https://x/device/v1/devices/d1/commands", "lock": "https://x/l"},
		Settings:    &bikeep.Settings{DeepLink: "x"}, LockState: bikeep.LockUnlocked, HeartbeatHealth: bikeep.HealthUnhealthy,
		URI: "https://x/d1", PowerSaveStrategy: bikeep.PowerLocalWakeup, Tags: []string{"no-auto-remediation"},
		Comment: "c", Location: &bikeep.Ref{ID: "L1", URI: "https://x/L1"}, User: &bikeep.User{AccessKey: "k", ID: "u"},
		HardwareID: "hw", HardwareState: bikeep.HardwareError, HasCamera: true,
	}
	c := newCompactor()
	got := c.devices([]bikeep.Device{full})[0]
	p := health.Params{LockMismatchGrace: time.Minute, TransitionGrace: time.Minute, RentalMaxDuration: time.Hour}
	if a, b := health.ClassifyDevice(&full, now, p), health.ClassifyDevice(&got, now, p); !reflect.DeepEqual(a, b) {
		t.Fatalf("classification differs:\nfull    %+v\ncompact %+v", a, b)
	}
	if !got.Supports("sync-device") || !got.Supports("lock") || got.Supports("unlock") || health.CanSync(&got) != health.CanSync(&full) {
		t.Fatalf("commands = %v", got.Commands)
	}
	if got.User != nil || got.Settings != nil || got.PriceList != nil || got.URI != "" || got.Heartbeat != "" || got.WifiRSSI != nil {
		t.Fatalf("dropped fields kept: %+v", got)
	}
	if got.ID != "d1" || got.Alias != "FR-1" || got.Code != "C1" || got.HardwareID != "hw" || got.LocationID() != "L1" ||
		got.Tags[0] != "no-auto-remediation" || got.Health() != bikeep.HealthUnhealthy || !got.HasCamera {
		t.Fatalf("kept fields lost: %+v", got)
	}
	other := full
	other.ID = "d2"
	other.Commands = map[string]string{"lock": "https://x/l2", "sync-device": "https://x/s2"}
	two := c.devices([]bikeep.Device{other})[0]
	if reflect.ValueOf(two.Commands).UnsafePointer() != reflect.ValueOf(got.Commands).UnsafePointer() {
		t.Fatal("devices with the same commands do not share one map")
	}
}
