package scrape

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/clients/copri"
)

// gate holds every call that reaches it until it is opened, and tells when
// the first call has arrived.
type gate struct {
	arrived chan struct{}
	once    sync.Once
	open    chan struct{}
}

func newGate() *gate { return &gate{arrived: make(chan struct{}), open: make(chan struct{})} }

func (g *gate) pass(ctx context.Context) {
	g.once.Do(func() { close(g.arrived) })
	select {
	case <-g.open:
	case <-ctx.Done():
	}
}

// gatedDevices holds device-list requests at its gate, if one is set.
type gatedDevices struct {
	*fakeDevices
	gate atomic.Pointer[gate]
}

func (g *gatedDevices) ListLocationDevices(ctx context.Context, id string) ([]bikeep.Device, error) {
	if gt := g.gate.Load(); gt != nil {
		gt.pass(ctx)
	}
	return g.fakeDevices.ListLocationDevices(ctx, id)
}

// gatedRentals holds rental requests at its gate, if one is set.
type gatedRentals struct {
	*fakeRentals
	gate atomic.Pointer[gate]
}

func (g *gatedRentals) UserBikesOccupied(ctx context.Context) ([]copri.Rental, error) {
	if gt := g.gate.Load(); gt != nil {
		gt.pass(ctx)
	}
	return g.fakeRentals.UserBikesOccupied(ctx)
}

func locationIDs(snap *Snapshot) []string {
	var ids []string
	for _, l := range snap.Locations {
		ids = append(ids, l.ID)
	}
	return ids
}

// walkObserver records what a scraper hands its subscribers.
type walkObserver struct {
	mu        sync.Mutex
	published []*Snapshot
	walked    []*Snapshot
}

func (w *walkObserver) onPublish(s *Snapshot) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.published = append(w.published, s)
}

func (w *walkObserver) onDeviceWalk(_ context.Context, s *Snapshot) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.walked = append(w.walked, s)
}

// A reload while a device walk is out fetching changes the locations under
// it. The walk still ends normally: it publishes, its subscriber (the
// remediation pass) gets its snapshot, its results count for the locations
// still configured, and a location the reload dropped stays dropped.
func TestReloadDuringDeviceWalk(t *testing.T) {
	for _, tc := range []struct {
		name          string
		before, after []string // nil: discovery
		// want are the locations once the walk is applied; wantUp those of
		// them the walk read.
		want, wantUp []string
		// next are the locations after one more walk.
		next []string
	}{
		{name: "discovery to a fixed list", after: []string{"loc-1", "loc-9"},
			want: []string{"loc-1", "loc-9"}, wantUp: []string{"loc-1"}, next: []string{"loc-1", "loc-9"}},
		{name: "fixed list to discovery", before: []string{"loc-0", "loc-1"},
			want: []string{"loc-0", "loc-1"}, wantUp: []string{"loc-0", "loc-1"}, next: []string{"loc-0", "loc-1", "loc-2"}},
		{name: "fixed list to another", before: []string{"loc-0", "loc-1"}, after: []string{"loc-1", "loc-2"},
			want: []string{"loc-1", "loc-2"}, wantUp: []string{"loc-1"}, next: []string{"loc-1", "loc-2"}},
		{name: "discovery to discovery", want: []string{"loc-0", "loc-1", "loc-2"},
			wantUp: []string{"loc-0", "loc-1", "loc-2"}, next: []string{"loc-0", "loc-1", "loc-2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fleet := &gatedDevices{fakeDevices: newFleet(3)}
			obs := &walkObserver{}
			s := newScraper(t, Options{Devices: fleet, LocationIDs: tc.before,
				OnPublish: obs.onPublish, OnDeviceWalk: obs.onDeviceWalk})
			if err := s.WalkDevices(context.Background()); err != nil {
				t.Fatal(err)
			}
			g := newGate()
			fleet.gate.Store(g)
			done := make(chan error, 1)
			go func() { done <- s.WalkDevices(context.Background()) }()
			<-g.arrived
			if err := s.Reconfigure(Options{Devices: fleet, LocationIDs: tc.after, Concurrency: 4, StaleAfter: time.Minute}); err != nil {
				t.Fatal(err)
			}
			close(g.open)
			if err := <-done; err != nil {
				t.Fatalf("walk across the reload: %v", err)
			}
			fleet.gate.Store(nil)

			obs.mu.Lock()
			walked, last := obs.walked, obs.published[len(obs.published)-1]
			obs.mu.Unlock()
			if len(walked) != 2 || walked[1] != last || walked[1] != s.Snapshot() {
				t.Fatalf("walk across the reload: %d subscriber calls, its snapshot published: %v", len(walked), walked[len(walked)-1] == last)
			}
			snap := walked[1]
			if got := locationIDs(snap); !slices.Equal(got, tc.want) {
				t.Errorf("locations after the walk = %v, want %v", got, tc.want)
			}
			for _, l := range snap.Locations {
				up := slices.Contains(tc.wantUp, l.ID)
				if l.Up != up || (up && (len(l.Devices) != 2 || faultsAt(snap, l.ID) != 1)) {
					t.Errorf("location %s: up %v with %d devices and %d faults, want up %v", l.ID, l.Up, len(l.Devices), faultsAt(snap, l.ID), up)
				}
			}
			for _, f := range snap.Faults {
				if !slices.Contains(tc.want, f.LocationID) {
					t.Errorf("fault of a dropped location: %+v", f)
				}
				if f.Walks != 2 {
					t.Errorf("fault episode not continued across the reload: %+v", f)
				}
			}
			if err := s.WalkDevices(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := locationIDs(s.Snapshot()); !slices.Equal(got, tc.next) {
				t.Errorf("locations after the next walk = %v, want %v", got, tc.next)
			}
		})
	}
}

// A reload that removes an operator while its rental walk is out drops it
// for good: the walk's late result brings back neither it nor its faults;
// an operator the reload adds waits for its first walk.
func TestReloadDuringRentalWalk(t *testing.T) {
	clk := newClock()
	rentals := &gatedRentals{fakeRentals: &fakeRentals{rentals: []copri.Rental{{BookingID: "1", Bike: "FR1",
		State: copri.StateOccupied, LockState: copri.LockLocked, StartTime: clk.Now().Add(-30 * time.Hour)}}}}
	opts := func(names ...string) Options {
		o := Options{Devices: newFleet(1), Now: clk.Now, StaleAfter: time.Minute}
		o.Health.RentalMaxDuration = 24 * time.Hour
		for _, n := range names {
			o.Operators = append(o.Operators, Operator{Name: n, API: rentals})
		}
		return o
	}
	s := newScraper(t, opts("kept", "removed"))
	g := newGate()
	rentals.gate.Store(g)
	done := make(chan error, 1)
	go func() { done <- s.WalkRentals(context.Background()) }()
	<-g.arrived
	if err := s.Reconfigure(opts("kept", "added")); err != nil {
		t.Fatal(err)
	}
	close(g.open)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	snap := s.Snapshot()
	var names []string
	for _, o := range snap.Operators {
		names = append(names, fmt.Sprintf("%s up=%v", o.Name, o.Up))
	}
	if want := []string{"added up=false", "kept up=true"}; !slices.Equal(names, want) {
		t.Errorf("operators = %v, want %v", names, want)
	}
	if _, ok := snap.Source("copri/removed"); ok {
		t.Error("removed operator is a source again")
	}
	if len(snap.RentalFaults) != 1 || snap.RentalFaults[0].Operator != "kept" {
		t.Errorf("rental faults = %+v, want the overdue rental of kept alone", snap.RentalFaults)
	}
}

// Walks and reloads race freely (run with -race): discovery and fixed
// lists alternate, operators come and go, the schedule changes under a
// running Run. Every device walk publishes and reaches its subscriber, and
// once the reloads stop the fleet is what the last config says.
func TestReloadsRaceWalks(t *testing.T) {
	fleet := newFleet(4)
	fleet.delay = time.Millisecond
	rentals := &fakeRentals{}
	var walks atomic.Int32
	base := Options{Devices: fleet, Concurrency: 2, StaleAfter: time.Minute,
		OnDeviceWalk: func(context.Context, *Snapshot) { walks.Add(1) }}
	configs := []Options{base, base, base, base}
	configs[1].LocationIDs = []string{"loc-1", "loc-3"}
	configs[2].Operators = []Operator{{Name: "a", API: rentals}, {Name: "b", API: rentals}}
	configs[3].LocationIDs = []string{"loc-0"}
	configs[3].Operators = []Operator{{Name: "b", API: rentals}}
	s := newScraper(t, base)
	s.SetSchedule(mustSchedule(t, "@every 1s", "@every 1s"))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = s.Run(ctx) })
	const n = 40
	wg.Go(func() {
		for range n {
			_ = s.WalkDevices(ctx)
		}
	})
	wg.Go(func() {
		for range n {
			_ = s.WalkRentals(ctx)
		}
	})
	for i := range 4 * n {
		if err := s.Reconfigure(configs[i%len(configs)]); err != nil {
			t.Fatal(err)
		}
		s.SetSchedule(mustSchedule(t, fmt.Sprintf("@every %ds", 1+i%3), "@every 2s"))
		time.Sleep(200 * time.Microsecond)
	}
	cancel()
	wg.Wait()
	if got := walks.Load(); got < n {
		t.Fatalf("%d device walks reached the subscriber, want at least %d", got, n)
	}
	if err := s.Reconfigure(configs[3]); err != nil {
		t.Fatal(err)
	}
	if err := s.WalkDevices(context.Background()); err != nil {
		t.Fatal(err)
	}
	snap := s.Snapshot()
	if got := locationIDs(snap); !slices.Equal(got, []string{"loc-0"}) {
		t.Errorf("locations = %v, want [loc-0]", got)
	}
	if len(snap.Operators) != 1 || snap.Operators[0].Name != "b" {
		t.Errorf("operators = %+v, want b alone", snap.Operators)
	}
	for _, f := range snap.Faults {
		if f.LocationID != "loc-0" {
			t.Errorf("fault of an unconfigured location: %+v", f)
		}
	}
}
