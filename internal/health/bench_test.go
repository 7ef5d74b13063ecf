package health

import (
	"fmt"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/clients/copri"
	"github.com/fleetd/fleetd/internal/record"
)

// fleet builds locs locations of perLoc devices; every 20th device (5 %) has
// a fault, cycling through the kinds a real fleet shows.
func fleet(locs, perLoc int) (ids []string, devices [][]bikeep.Device) {
	faulty := []func(*bikeep.Device){
		health(bikeep.HealthUnhealthy),
		lock(bikeep.LockUnlocked),
		hw(bikeep.HardwareError),
		func(d *bikeep.Device) {
			d.HeartbeatV2.Health = bikeep.HealthDead
			d.HeartbeatV2.DeadSince = ts(t0.Add(-time.Hour))
		},
		state(bikeep.StateLocking),
		hw(bikeep.HardwareNotResponding),
		hw("QUANTUM_FLUX"),
	}
	n := 0
	for l := range locs {
		id := fmt.Sprintf("loc-%04d", l)
		ids = append(ids, id)
		ds := make([]bikeep.Device, 0, perLoc)
		for i := range perLoc {
			d := dev(fmt.Sprintf("%s-dev-%02d", id, i))
			d.Tags = []string{"copri:" + d.Alias}
			if i%10 == 9 {
				d.Type = bikeep.TypeBikeHouseDoor // idle: LOCKED/LOCKED
			}
			if n%20 == 7 {
				faulty[(n/20)%len(faulty)](&d)
			}
			ds = append(ds, d)
			n++
		}
		devices = append(devices, ds)
	}
	return ids, devices
}

// BenchmarkObserveFleet is one device walk of 2,000 locations × 50 devices
// (100,000 devices, 5 % faulty) followed by Faults(), as the scraper and
// exporter do after each walk.
func BenchmarkObserveFleet(b *testing.B) {
	ids, full := fleet(2000, 50)
	devices := make([][]record.Device, len(full))
	for i := range full {
		devices[i] = bikeep.Records(full[i]...) // what the walk keeps
	}
	tr := NewTracker(params)
	now := t0
	for i := range ids { // warm up: steady state is what every later walk costs
		tr.ObserveRecords(now, ids[i], devices[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	var faults int
	for b.Loop() {
		now = now.Add(30 * time.Second)
		for i := range ids {
			tr.ObserveRecords(now, ids[i], devices[i])
		}
		faults = len(tr.Faults())
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100000, "ns/device")
	if faults < 4000 {
		b.Fatalf("only %d active faults; the fixture should have ~5000", faults)
	}
}

// BenchmarkObserveOperator is a rental walk: 500 open rentals matched by tag
// against the 100,000-device fleet.
func BenchmarkObserveOperator(b *testing.B) {
	ids, devices := fleet(2000, 50)
	tr := NewTracker(params)
	for i := range ids {
		tr.ObserveLocation(t0, ids[i], devices[i])
	}
	var rentals []copri.Rental
	for i := range 500 {
		d := devices[i*4][i%50]
		rentals = append(rentals, copri.Rental{BookingID: fmt.Sprint(i), Bike: d.Alias, State: copri.StateOccupied,
			LockState: copri.LockUnlocked, StartTime: t0.Add(-time.Hour)})
	}
	m := Match{Field: MatchTag, TagPrefix: "copri:"}
	b.ReportAllocs()
	for b.Loop() {
		tr.ObserveOperator(t0, "fr", m, rentals, nil)
	}
}

func BenchmarkClassifyDevice(b *testing.B) {
	cases := []struct {
		name string
		d    bikeep.Device
	}{
		{"healthy", dev("a")},
		{"lock_mismatch", dev("a", lock(bikeep.LockUnlocked))},
		{"dead_hardware_error", dev("a", health(bikeep.HealthDead), hw(bikeep.HardwareError))},
		{"unknown_state", dev("a", hw("QUANTUM_FLUX"), typ("TELEPORTER"))},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			buf := make([]Condition, 0, 8)
			r := c.d.Record()
			b.ReportAllocs()
			for b.Loop() {
				buf = appendConditions(buf[:0], &r, t0, params)
			}
		})
	}
}

// TestObserveLocationSteadyStateAllocations pins the performance contract:
// once a location has been seen, walking it again allocates nothing while
// its devices are healthy or keep constant-detail faults.
func TestObserveLocationSteadyStateAllocations(t *testing.T) {
	ds := []bikeep.Device{dev("a"), dev("b", hw(bikeep.HardwareError)), dev("c", typ(bikeep.TypeBikeHouseDoor))}
	for i := range 50 {
		ds = append(ds, dev(fmt.Sprint("h", i)))
	}
	tr := NewTracker(params)
	now := t0
	recs := bikeep.Records(ds...) // what the walk keeps
	tr.ObserveRecords(now, "loc", recs)
	allocs := testing.AllocsPerRun(50, func() {
		now = now.Add(time.Second)
		tr.ObserveRecords(now, "loc", recs)
	})
	if allocs != 0 {
		t.Errorf("ObserveRecords allocates %v times per steady-state walk, want 0", allocs)
	}
	if fs := tr.Faults(); len(fs) != 1 || fs[0].Walks != 52 {
		t.Fatalf("faults = %+v, want b's hardware_error with Walks 52", fs)
	}
}
