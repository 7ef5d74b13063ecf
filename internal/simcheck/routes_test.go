package simcheck

import (
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/sim"
	"github.com/fleetd/fleetd/internal/simtest"
)

func TestLocations(t *testing.T) {
	h := newHarness(t, testOptions())
	var list struct {
		Data []bikeep.Location `json:"data"`
		URI  string            `json:"uri"`
	}
	simtest.MustUnmarshal(t, h.Get("/location/v1/locations"), &list)
	if len(list.Data) != 12 || !strings.HasSuffix(list.URI, "/location/v1/locations") {
		t.Fatalf("%d locations, uri %q", len(list.Data), list.URI)
	}
	l := list.Data[0]
	if l.Status != "LAUNCHED" || l.Connection != "online" || l.Devices.Total != 10 || l.Devices.Online != 10 || !l.Type.Known() || l.Name == "" {
		t.Errorf("location %+v", l)
	}
	// A dead device drops out of online.
	d := h.sim.Devices(l.ID)[2]
	if err := h.sim.SetFault(d.ID, sim.FaultDead); err != nil {
		t.Fatal(err)
	}
	simtest.MustUnmarshal(t, h.Get("/location/v1/locations"), &list)
	if list.Data[0].Devices.Online != 9 {
		t.Errorf("online %d after a dead device, want 9", list.Data[0].Devices.Online)
	}
}

func TestRentalDeviceAgreement(t *testing.T) {
	h := newHarness(t, testOptions())
	for _, r := range h.sim.Rentals() {
		var id string
		for _, l := range h.sim.Locations() {
			for _, d := range h.sim.Devices(l.ID) {
				if d.Bike == r.Bike {
					id = d.ID
				}
			}
		}
		d := h.device(id)
		if !strings.EqualFold(string(d.LockState), string(r.LockState)) {
			t.Errorf("bike %s: device lock %s, rental lock %s", r.Bike, d.LockState, r.LockState)
		}
	}
}
