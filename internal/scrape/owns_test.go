package scrape

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
)

// countingDevices counts the device-list requests per location.
type countingDevices struct {
	*fakeDevices
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingDevices) ListLocationDevices(ctx context.Context, id string) ([]bikeep.Device, error) {
	c.mu.Lock()
	c.calls[id]++
	c.mu.Unlock()
	return c.fakeDevices.ListLocationDevices(ctx, id)
}

// With Owns, a walk fetches and reports only the owned locations; a
// location that stops being owned is forgotten (its new owner reports it)
// and one taken over is walked, configured or discovered.
func TestOwnsFiltersWalkedLocations(t *testing.T) {
	for _, tc := range []struct {
		name       string
		configured []string
	}{
		{"discovered", nil},
		{"configured", []string{"loc-0", "loc-1", "loc-2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := &countingDevices{fakeDevices: newFleet(3), calls: map[string]int{}}
			var mu sync.Mutex
			mine := map[string]bool{"loc-0": true, "loc-2": true}
			s := newScraper(t, Options{Devices: api, LocationIDs: tc.configured, Owns: func(id string) bool {
				mu.Lock()
				defer mu.Unlock()
				return mine[id]
			}})
			walk := func() []string {
				t.Helper()
				if err := s.WalkDevices(context.Background()); err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, l := range s.Snapshot().Locations {
					ids = append(ids, l.ID)
				}
				slices.Sort(ids)
				return ids
			}
			if got := walk(); !slices.Equal(got, []string{"loc-0", "loc-2"}) {
				t.Fatalf("reported %v, want [loc-0 loc-2]", got)
			}
			if n := api.calls["loc-1"]; n != 0 {
				t.Errorf("loc-1 fetched %d times while another replica owns it", n)
			}
			mu.Lock()
			mine = map[string]bool{"loc-1": true}
			mu.Unlock()
			if got := walk(); !slices.Equal(got, []string{"loc-1"}) {
				t.Fatalf("after the slots moved, reported %v, want [loc-1]", got)
			}
			l := location(t, s.Snapshot(), "loc-1")
			if !l.Up || len(l.Devices) != 2 || faultsAt(s.Snapshot(), "loc-0") != 0 {
				t.Errorf("taken-over location = %+v; faults of the given-up location %d", l, faultsAt(s.Snapshot(), "loc-0"))
			}
		})
	}
}
