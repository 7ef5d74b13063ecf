package scrape

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
)

// overlapDevices answers discovery only once a device list has started, if
// wait is set, and counts discovery among the requests in flight.
type overlapDevices struct {
	*fakeDevices
	// wait is set by arm, between walks.
	wait     bool
	started  chan struct{}
	once     *sync.Once
	perID    sync.Map // id → *atomic.Int32
	discSeen atomic.Int32
}

func newOverlapDevices(n int) *overlapDevices {
	f := newFleet(n)
	f.delay = 2 * time.Millisecond
	return &overlapDevices{fakeDevices: f, started: make(chan struct{}), once: new(sync.Once)}
}

// arm makes the next walk's discovery wait for a device list to start.
func (o *overlapDevices) arm() {
	o.wait, o.started, o.once = true, make(chan struct{}), new(sync.Once)
}

func (o *overlapDevices) ListLocations(ctx context.Context) ([]bikeep.Location, error) {
	defer o.enter()()
	o.discSeen.Add(1)
	if o.wait {
		select {
		case <-o.started:
		case <-time.After(5 * time.Second):
			return nil, errors.New("no device list started while discovery was in flight")
		}
	}
	time.Sleep(5 * time.Millisecond)
	return o.fakeDevices.ListLocations(ctx)
}

func (o *overlapDevices) ListLocationDevices(ctx context.Context, id string) ([]bikeep.Device, error) {
	c, _ := o.perID.LoadOrStore(id, new(atomic.Int32))
	c.(*atomic.Int32).Add(1)
	o.once.Do(func() { close(o.started) })
	// fakeDevices counts this request in flight itself.
	return o.fakeDevices.ListLocationDevices(ctx, id)
}

func (o *overlapDevices) callsFor(id string) int32 {
	if c, ok := o.perID.Load(id); ok {
		return c.(*atomic.Int32).Load()
	}
	return 0
}

// A discovering walk does not wait for the location list before it starts
// on the locations it knows: the list's latency would precede every walk.
// Discovery holds one of the Concurrency slots meanwhile.
func TestDiscoveryOverlapsTheWalkWithinTheConcurrency(t *testing.T) {
	api := newOverlapDevices(12)
	s := newScraper(t, Options{Devices: api, Concurrency: 3})
	if err := s.WalkDevices(context.Background()); err != nil {
		t.Fatal(err) // the first walk knows no location: discovery goes first
	}
	api.arm()
	if err := s.WalkDevices(context.Background()); err != nil {
		t.Fatalf("second walk: %v", err)
	}
	if got := api.maxInFlight.Load(); got > 3 {
		t.Errorf("%d requests in flight, discovery included; the bound is 3", got)
	}
	if got := api.discSeen.Load(); got != 2 {
		t.Errorf("discovery ran %d times in two walks", got)
	}
	for i := range 12 {
		if got := api.callsFor(fmt.Sprintf("loc-%d", i)); got != 2 {
			t.Errorf("loc-%d walked %d times in two walks", i, got)
		}
	}
}

// What discovery adds is walked in the same walk; what it no longer lists
// is neither walked, once discovery has answered, nor reported.
func TestDiscoveryChangesTakeEffectInTheSameWalk(t *testing.T) {
	api := newOverlapDevices(6)
	api.delay = 20 * time.Millisecond
	// One slot beside discovery: the known locations are walked one at a
	// time, so discovery answers long before the last of them.
	s := newScraper(t, Options{Devices: api, Concurrency: 2})
	if err := s.WalkDevices(context.Background()); err != nil {
		t.Fatal(err)
	}
	api.mu.Lock()
	api.locations = append(api.locations[:5:5], bikeep.Location{ID: "loc-new", Type: bikeep.LocationBikeLockers})
	api.devices["loc-new"] = []bikeep.Device{device("new-d1", "loc-new", bikeep.HealthHealthy)}
	api.mu.Unlock()
	if err := s.WalkDevices(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := api.callsFor("loc-new"); got != 1 {
		t.Errorf("the new location was walked %d times, want once in the walk that discovered it", got)
	}
	if got := api.callsFor("loc-5"); got != 1 {
		t.Errorf("the location gone from discovery was walked %d times, want only in the first walk", got)
	}
	snap := s.Snapshot()
	if len(snap.Locations) != 6 || !location(t, snap, "loc-new").Up {
		t.Fatalf("locations = %+v", snap.Locations)
	}
	for _, l := range snap.Locations {
		if l.ID == "loc-5" {
			t.Fatalf("the location gone from discovery is still reported: %+v", l)
		}
	}
}

// panickingDiscovery panics in discovery once armed.
type panickingDiscovery struct {
	*fakeDevices
	armed atomic.Bool
}

func (p *panickingDiscovery) ListLocations(ctx context.Context) ([]bikeep.Location, error) {
	if p.armed.Load() {
		panic("fake discovery panic")
	}
	return p.fakeDevices.ListLocations(ctx)
}

// A panic in discovery, which runs beside the walk's workers, is a failed
// discovery: the known locations are walked and no worker waits for an
// answer that never comes.
func TestPanickingDiscoveryIsAFailedDiscovery(t *testing.T) {
	api := &panickingDiscovery{fakeDevices: newFleet(3)}
	s := newScraper(t, Options{Devices: api})
	if err := s.WalkDevices(context.Background()); err != nil {
		t.Fatal(err)
	}
	api.armed.Store(true)
	err := s.WalkDevices(context.Background())
	if err == nil || !strings.Contains(err.Error(), "panic while discovering locations: fake discovery panic") {
		t.Fatalf("err = %v", err)
	}
	if snap := s.Snapshot(); len(snap.Locations) != 3 || !location(t, snap, "loc-2").Up {
		t.Fatalf("the known locations must still be walked: %+v", snap.Locations)
	}
}
