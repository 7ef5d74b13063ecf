package exporter

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/clients/copri"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/scrape"
)

var update = flag.Bool("update", false, "rewrite the golden exposition files")

type staticSource struct{ snap *scrape.Snapshot }

func (s *staticSource) Snapshot() *scrape.Snapshot { return s.snap }

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func dev(id, alias, loc string, typ bikeep.DeviceType, h bikeep.Health, hw bikeep.HardwareState) bikeep.Device {
	d := bikeep.Device{ID: id, Alias: alias, Code: "C" + alias, Type: typ, HardwareState: hw,
		PowerSaveStrategy: bikeep.PowerNone, Location: &bikeep.Ref{ID: loc}}
	if h != "" {
		d.HeartbeatV2 = &bikeep.HeartbeatV2{Health: h}
	}
	return d
}

// testSnapshot covers every metric: three walked locations (one down with
// last good data, one partial with a carried device), one never-walked
// location, stale data, rentals and bikes.
func testSnapshot() *scrape.Snapshot {
	return &scrape.Snapshot{
		Taken: t0,
		Sources: []scrape.SourceStatus{
			{Name: "bikeep", Up: true, Walked: true, LastSuccess: t0, LastDuration: 1500 * time.Millisecond, Walks: 10, Failures: 1},
			{Name: "copri/freiburg", Up: false, Walked: true, LastSuccess: t0.Add(-time.Minute), LastDuration: 200 * time.Millisecond, Walks: 5, Failures: 2, LastError: "login refused"},
			{Name: "copri/never", Walks: 0},
		},
		Locations: []scrape.LocationStatus{
			{ID: "L1", Name: "Vauban", Type: bikeep.LocationBikeLockers, Up: true, LastSuccess: t0, Devices: bikeep.Records(
				dev("d1", "FR-01", "L1", bikeep.TypeLocker, bikeep.HealthHealthy, bikeep.HardwareNormal),
				dev("d2", "FR-02", "L1", bikeep.TypeLocker, bikeep.HealthHealthy, bikeep.HardwareNormal),
				dev("d3", "FR-03", "L1", bikeep.TypeLocker, bikeep.HealthDead, bikeep.HardwareNormal),
				dev("d4", "FR-04", "L1", bikeep.TypeGuard, "", ""),
				dev("d5", "FR-05", "L1", bikeep.TypeLocker, "ZOMBIE", bikeep.HardwareNormal),
			)},
			{ID: "L2", Name: "Rieselfeld", Type: bikeep.LocationBikeDocks, Up: false, LastSuccess: t0.Add(-2 * time.Minute), LastError: "500", Devices: bikeep.Records(
				dev("d6", "FR-06", "L2", bikeep.TypeBikeDock, bikeep.HealthUnhealthy, bikeep.HardwareError),
			)},
			{ID: "L3", Up: false, LastError: "connection refused"},
			{ID: "L4", Name: "Stale", Type: bikeep.LocationBikeHouse, Up: false, Stale: true, LastSuccess: t0.Add(-time.Hour), LastError: "timeout",
				UndecodableTotal: 2},
			{ID: "L5", Name: "Partial", Type: bikeep.LocationBikeLockers, Up: true, LastSuccess: t0,
				Undecodable: 1, UndecodableTotal: 3, DecodeError: "item 1 (id d8): wrong type",
				Devices: bikeep.Records(dev("d7", "FR-07", "L5", bikeep.TypeLocker, bikeep.HealthHealthy, bikeep.HardwareNormal)),
				Carried: bikeep.Records(dev("d8", "FR-08", "L5", bikeep.TypeLocker, bikeep.HealthUnhealthy, bikeep.HardwareNormal)),
			},
		},
		Operators: []scrape.OperatorStatus{{
			Name: "freiburg", Up: true, LastSuccess: t0,
			Rentals: []copri.Rental{
				{BookingID: "1", Bike: "FR1540", Station: "FR101", State: copri.StateOccupied, LockState: copri.LockUnlocked},
				{BookingID: "2", Bike: "FR1541", Station: "FR101", State: copri.StateOccupied, LockState: copri.LockLocked},
				{BookingID: "3", Bike: "FR1542", Station: "FR102", State: copri.StateOccupied, LockState: copri.LockLocked},
			},
			Bikes: []copri.Bike{
				{Bike: "FR1540", Station: "FR101", State: copri.StateOccupied, LockState: copri.LockUnlocked},
				{Bike: "FR1543", Station: "FR101", State: copri.StateAvailable, LockState: copri.LockLocked},
				{Bike: "FR1544", Station: "FR101", State: copri.StateAvailable, LockState: copri.LockLocked},
			},
		}},
		Faults: []health.Fault{
			{Kind: health.Dead, DeviceID: "d3", Alias: "FR-03", LocationID: "L1", DeviceType: bikeep.TypeLocker, Since: t0.Add(-time.Hour)},
			{Kind: health.UnknownState, DeviceID: "d5", Alias: "FR-05", LocationID: "L1", DeviceType: bikeep.TypeLocker, Since: t0},
			{Kind: health.HardwareError, DeviceID: "d6", Alias: "FR-06", LocationID: "L2", DeviceType: bikeep.TypeBikeDock, Recoverable: true, Since: t0.Add(-10 * time.Minute)},
			{Kind: health.Unhealthy, DeviceID: "d6", Alias: "FR-06", LocationID: "L2", DeviceType: bikeep.TypeBikeDock, Recoverable: true, Since: t0.Add(-10 * time.Minute)},
			{Kind: health.Unhealthy, DeviceID: "d8", Alias: "FR-08", LocationID: "L5", DeviceType: bikeep.TypeLocker, Recoverable: true, Since: t0.Add(-5 * time.Minute)},
		},
		RentalFaults: []health.RentalFault{
			{Kind: health.Overdue, Operator: "freiburg", BookingID: "3", Bike: "FR1542", Station: "FR102", Since: t0.Add(-time.Hour)},
		},
	}
}

func gather(t *testing.T, perDevice bool) []byte {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(&staticSource{testSnapshot()}, perDevice))
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	var buf bytes.Buffer
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if err := writeText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestCollectorGolden(t *testing.T) {
	for _, tc := range []struct {
		name      string
		perDevice bool
	}{{"aggregate", false}, {"per-device", true}} {
		t.Run(tc.name, func(t *testing.T) {
			got := gather(t, tc.perDevice)
			path := filepath.Join("testdata", tc.name+".prom")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			// Compare through testutil as well, which checks the text parses.
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(NewCollector(&staticSource{testSnapshot()}, tc.perDevice))
			if err := testutil.GatherAndCompare(reg, bytes.NewReader(want)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("exposition differs from %s (run go test -update)", path)
			}
		})
	}
}

func TestEveryFaultKindForEveryLocationWithData(t *testing.T) {
	// L1, L2 and L5 carry data; L3 (never walked) and L4 (stale) do not.
	want := 3 * len(health.DeviceFaultKinds())
	if got := testutil.CollectAndCount(NewCollector(&staticSource{testSnapshot()}, false), "fleet_device_faults"); got != want {
		t.Fatalf("fleet_device_faults series = %d, want %d", got, want)
	}
}

func TestPerDeviceSeriesOnlyWhenAsked(t *testing.T) {
	c := NewCollector(&staticSource{testSnapshot()}, false)
	if n := testutil.CollectAndCount(c, "fleet_device_info", "fleet_device_health"); n != 0 {
		t.Fatalf("per-device series without per_device: %d", n)
	}
	c = NewCollector(&staticSource{testSnapshot()}, true)
	// 8 devices (d8 carried); health state set: 4 documented values each,
	// plus ZOMBIE for d5.
	if n := testutil.CollectAndCount(c, "fleet_device_info"); n != 8 {
		t.Fatalf("fleet_device_info = %d, want 8", n)
	}
	if n := testutil.CollectAndCount(c, "fleet_device_health"); n != 8*4+1 {
		t.Fatalf("fleet_device_health = %d, want 33", n)
	}
}

func TestHelpSaysCached(t *testing.T) {
	out := string(gather(t, true))
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "# HELP fleet_") || strings.HasPrefix(line, "# HELP copri_") {
			if !strings.Contains(line, "Cached") {
				t.Errorf("HELP does not say the value is cached: %s", line)
			}
		}
	}
}

// A partial location says so, and its carried devices are still counted:
// the glitch must not look like devices leaving.
func TestPartialLocationIsExported(t *testing.T) {
	c := NewCollector(&staticSource{testSnapshot()}, false)
	want := `
# HELP fleet_location_partial 1 if the last walk of this location read its device list only in part: some entries could not be decoded, and devices missing from the list keep their last known state and faults. Cached: the value is from the last walk, not fetched at scrape time.
# TYPE fleet_location_partial gauge
fleet_location_partial{location_id="L1"} 0
fleet_location_partial{location_id="L2"} 0
fleet_location_partial{location_id="L3"} 0
fleet_location_partial{location_id="L4"} 0
fleet_location_partial{location_id="L5"} 1
# HELP fleetd_location_undecodable_devices_total Device list entries of this location that could not be decoded, summed over its walks since fleetd started.
# TYPE fleetd_location_undecodable_devices_total counter
fleetd_location_undecodable_devices_total{location_id="L1"} 0
fleetd_location_undecodable_devices_total{location_id="L2"} 0
fleetd_location_undecodable_devices_total{location_id="L3"} 0
fleetd_location_undecodable_devices_total{location_id="L4"} 2
fleetd_location_undecodable_devices_total{location_id="L5"} 3
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "fleet_location_partial", "fleetd_location_undecodable_devices_total"); err != nil {
		t.Fatal(err)
	}
	wantDevices := `
# HELP fleet_devices Devices by location, type, heartbeat_v2 health and hardware state (present combinations only). Cached: the value is from the last walk, not fetched at scrape time.
# TYPE fleet_devices gauge
fleet_devices{device_type="LOCKER",hardware_state="NORMAL",health="HEALTHY",location_id="L5"} 1
fleet_devices{device_type="LOCKER",hardware_state="NORMAL",health="UNHEALTHY",location_id="L5"} 1
`
	snap := testSnapshot()
	snap.Locations = snap.Locations[4:]
	if err := testutil.CollectAndCompare(NewCollector(&staticSource{snap}, false), strings.NewReader(wantDevices), "fleet_devices"); err != nil {
		t.Fatal(err)
	}
}
