package scrape

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/secret"
	"github.com/fleetd/fleetd/internal/sim"
)

// The walk decodes through the client's streaming decoder, and consecutive
// snapshots share the records of locations whose devices did not change:
// holding two snapshots costs one fleet, not two.
func TestConsecutiveSnapshotsShareUnchangedLocations(t *testing.T) {
	s, err := sim.New(sim.Options{Seed: 3, Locations: 6, DevicesPerLocation: 20})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	cl, err := bikeep.NewClient(srv.URL, bikeep.WithClientCredentials(srv.URL+"/oauth2/token",
		sim.DefaultClientID, secret.String(sim.DefaultClientSecret)))
	if err != nil {
		t.Fatal(err)
	}
	var _ RecordAPI = cl // the walk must take the streaming path
	sc, err := New(Options{Devices: cl, Concurrency: 4, RequestTimeout: 10 * time.Second,
		Health: health.Params{LockMismatchGrace: time.Minute, TransitionGrace: time.Minute}, StaleAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := sc.WalkDevices(ctx); err != nil {
		t.Fatal(err)
	}
	first := sc.Snapshot()
	if n := first.DeviceCount(); n != 120 {
		t.Fatalf("walked %d devices, want 120", n)
	}
	changed := first.Locations[2].Devices[5].ID
	if err := s.SetFault(changed, sim.FaultHardwareError); err != nil {
		t.Fatal(err)
	}
	if err := sc.WalkDevices(ctx); err != nil {
		t.Fatal(err)
	}
	second := sc.Snapshot()
	for i := range second.Locations {
		a, b := first.Locations[i].Devices, second.Locations[i].Devices
		shared := &a[0] == &b[0]
		switch {
		case i == 2 && shared:
			t.Errorf("location %s changed but its records are shared with the previous snapshot", second.Locations[i].ID)
		case i != 2 && !shared:
			t.Errorf("location %s unchanged but its records were copied", second.Locations[i].ID)
		}
	}
	if d, ok := second.Device(second.Locations[2].ID, changed); !ok || d.HardwareStateName() != "ERROR" {
		t.Fatalf("changed device: %+v, %v", d, ok)
	}
	if d, _ := first.Device(first.Locations[2].ID, changed); d.HardwareStateName() == "ERROR" {
		t.Fatal("the previous snapshot changed: snapshots must be immutable")
	}
	// Unchanged devices of the changed location still share their strings.
	a, b := first.Locations[2].Devices[0], second.Locations[2].Devices[0]
	if a.ID != b.ID || unsafeData(a.Alias) != unsafeData(b.Alias) {
		t.Error("an unchanged device of a changed location got new strings")
	}
}
