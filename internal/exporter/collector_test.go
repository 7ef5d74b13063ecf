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

// testSnapshot covers every metric: two walked locations (one down with last
// good data), one never-walked location, stale data, rentals and bikes.
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
			{ID: "L4", Name: "Stale", Type: bikeep.LocationBikeHouse, Up: false, Stale: true, LastSuccess: t0.Add(-time.Hour), LastError: "timeout"},
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
	// L1 and L2 carry data; L3 (never walked) and L4 (stale) do not.
	want := 2 * len(health.DeviceFaultKinds())
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
	// 6 devices; health state set: 4 documented values each, plus ZOMBIE for d5.
	if n := testutil.CollectAndCount(c, "fleet_device_info"); n != 6 {
		t.Fatalf("fleet_device_info = %d, want 6", n)
	}
	if n := testutil.CollectAndCount(c, "fleet_device_health"); n != 6*4+1 {
		t.Fatalf("fleet_device_health = %d, want 25", n)
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
