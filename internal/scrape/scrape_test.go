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
	"github.com/fleetd/fleetd/internal/clients/copri"
	"github.com/fleetd/fleetd/internal/health"
)

// fakeDevices is an in-memory DeviceAPI.
type fakeDevices struct {
	mu        sync.Mutex
	locations []bikeep.Location
	devices   map[string][]bikeep.Device
	fail      map[string]error
	discErr   error
	delay     time.Duration
	panicOn   string

	inFlight, maxInFlight, calls atomic.Int32
}

func (f *fakeDevices) ListLocations(ctx context.Context) ([]bikeep.Location, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.discErr != nil {
		return nil, f.discErr
	}
	return append([]bikeep.Location(nil), f.locations...), nil
}

// enter counts a request in flight, keeping the most seen at once, until
// the returned function is called.
func (f *fakeDevices) enter() (leave func()) {
	n := f.inFlight.Add(1)
	for {
		m := f.maxInFlight.Load()
		if n <= m || f.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	return func() { f.inFlight.Add(-1) }
}

func (f *fakeDevices) ListLocationDevices(ctx context.Context, id string) ([]bikeep.Device, error) {
	defer f.enter()()
	f.calls.Add(1)
	f.mu.Lock()
	delay, err, devs, panicOn := f.delay, f.fail[id], f.devices[id], f.panicOn
	f.mu.Unlock()
	if id == panicOn {
		panic("fake panic")
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	return devs, nil
}

func (f *fakeDevices) setFail(id string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[id] = err
}

func device(id, loc string, h bikeep.Health) bikeep.Device {
	return bikeep.Device{
		ID: id, Alias: "A-" + id, Type: bikeep.TypeLocker, Location: &bikeep.Ref{ID: loc},
		HeartbeatV2:   &bikeep.HeartbeatV2{Health: h},
		HardwareState: bikeep.HardwareNormal, LockState: bikeep.LockLocked,
		State: &bikeep.DeviceState{Value: bikeep.StateLocked},
	}
}

func newFleet(n int) *fakeDevices {
	f := &fakeDevices{devices: map[string][]bikeep.Device{}, fail: map[string]error{}}
	for i := range n {
		id := fmt.Sprintf("loc-%d", i)
		f.locations = append(f.locations, bikeep.Location{ID: id, Name: "Location " + id, Type: bikeep.LocationBikeLockers})
		f.devices[id] = []bikeep.Device{device(id+"-d1", id, bikeep.HealthHealthy), device(id+"-d2", id, bikeep.HealthUnhealthy)}
	}
	return f
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)} }

func newScraper(t *testing.T, opts Options) *Scraper {
	t.Helper()
	if opts.StaleAfter == 0 {
		opts.StaleAfter = 5 * time.Minute
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 4
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func location(t *testing.T, snap *Snapshot, id string) LocationStatus {
	t.Helper()
	for _, l := range snap.Locations {
		if l.ID == id {
			return l
		}
	}
	t.Fatalf("location %s not in snapshot", id)
	return LocationStatus{}
}

func faultsAt(snap *Snapshot, loc string) int {
	n := 0
	for _, f := range snap.Faults {
		if f.LocationID == loc {
			n++
		}
	}
	return n
}

func TestFailingLocationDoesNotHideOthers(t *testing.T) {
	fleet := newFleet(3)
	clk := newClock()
	s := newScraper(t, Options{Devices: fleet, Now: clk.Now})
	if s.Ready() {
		t.Fatal("ready before the first walk")
	}
	if err := s.WalkDevices(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !s.Ready() {
		t.Fatal("not ready after the first walk")
	}
	fleet.setFail("loc-1", errors.New("500 Internal Server Error"))
	clk.Add(30 * time.Second)
	if err := s.WalkDevices(context.Background()); err != nil {
		t.Fatalf("one failing location must not fail the source: %v", err)
	}
	snap := s.Snapshot()
	src, _ := snap.Source(SourceBikeep)
	if !src.Up || src.Walks != 2 || src.Failures != 0 {
		t.Errorf("source = %+v, want up after 2 walks", src)
	}
	bad := location(t, snap, "loc-1")
	if bad.Up || bad.LastError == "" || len(bad.Devices) != 2 || bad.Stale {
		t.Errorf("failing location = %+v, want down with its last good devices kept", bad)
	}
	for _, id := range []string{"loc-0", "loc-2"} {
		l := location(t, snap, id)
		if !l.Up || len(l.Devices) != 2 || !l.LastSuccess.Equal(clk.Now()) || l.Name != "Location "+id {
			t.Errorf("healthy location %s = %+v", id, l)
		}
	}
	if got := faultsAt(snap, "loc-1"); got != 1 {
		t.Errorf("faults of the failing location = %d, want its last known 1", got)
	}
}

func TestAllLocationsFailingFailsTheSource(t *testing.T) {
	fleet := newFleet(2)
	fleet.setFail("loc-0", errors.New("boom"))
	fleet.setFail("loc-1", errors.New("boom"))
	s := newScraper(t, Options{Devices: fleet})
	err := s.WalkDevices(context.Background())
	if err == nil || err.Error() != "all 2 locations failed" {
		t.Fatalf("err = %v", err)
	}
	src, _ := s.Snapshot().Source(SourceBikeep)
	if src.Up || src.Failures != 1 || src.LastError != "all 2 locations failed" {
		t.Errorf("source = %+v", src)
	}
}

func TestStaleDataDropsAfterStaleAfter(t *testing.T) {
	fleet := newFleet(2)
	clk := newClock()
	s := newScraper(t, Options{Devices: fleet, Now: clk.Now, StaleAfter: 5 * time.Minute})
	_ = s.WalkDevices(context.Background())
	last := clk.Now()
	fleet.setFail("loc-0", errors.New("timeout"))

	for _, step := range []struct {
		advance   time.Duration
		wantStale bool
	}{
		{time.Minute, false},
		{4 * time.Minute, false}, // exactly stale_after: still reported
		{time.Second, true},
	} {
		clk.Add(step.advance)
		_ = s.WalkDevices(context.Background())
		snap := s.Snapshot()
		l := location(t, snap, "loc-0")
		if l.Stale != step.wantStale || (l.Devices == nil) != step.wantStale {
			t.Fatalf("at +%s: stale=%v devices=%d, want stale=%v", clk.Now().Sub(last), l.Stale, len(l.Devices), step.wantStale)
		}
		if l.Up || !l.LastSuccess.Equal(last) {
			t.Fatalf("stale location must stay visible as down with its last success: %+v", l)
		}
		wantFaults := 1
		if step.wantStale {
			wantFaults = 0
		}
		if got := faultsAt(snap, "loc-0"); got != wantFaults {
			t.Fatalf("at +%s: faults = %d, want %d", clk.Now().Sub(last), got, wantFaults)
		}
	}
	fleet.setFail("loc-0", nil)
	clk.Add(time.Minute)
	_ = s.WalkDevices(context.Background())
	if l := location(t, s.Snapshot(), "loc-0"); !l.Up || l.Stale || len(l.Devices) != 2 {
		t.Fatalf("recovered location = %+v", l)
	}
}

func TestDiscoveryFailureWalksKnownLocations(t *testing.T) {
	fleet := newFleet(2)
	s := newScraper(t, Options{Devices: fleet})
	_ = s.WalkDevices(context.Background())
	fleet.mu.Lock()
	fleet.discErr = errors.New("location api down")
	fleet.mu.Unlock()
	calls := fleet.calls.Load()
	err := s.WalkDevices(context.Background())
	if err == nil || err.Error() != "discover locations: location api down" {
		t.Fatalf("err = %v", err)
	}
	if got := fleet.calls.Load() - calls; got != 2 {
		t.Errorf("walked %d locations after discovery failed, want the 2 known", got)
	}
	if snap := s.Snapshot(); len(snap.Locations) != 2 || !location(t, snap, "loc-0").Up {
		t.Errorf("known locations must still be walked: %+v", snap.Locations)
	}
}

func TestLocationRemovedFromDiscoveryDropsOut(t *testing.T) {
	fleet := newFleet(3)
	s := newScraper(t, Options{Devices: fleet})
	_ = s.WalkDevices(context.Background())
	fleet.mu.Lock()
	fleet.locations = fleet.locations[:2]
	fleet.mu.Unlock()
	_ = s.WalkDevices(context.Background())
	snap := s.Snapshot()
	if len(snap.Locations) != 2 || faultsAt(snap, "loc-2") != 0 {
		t.Fatalf("removed location still reported: %+v", snap.Locations)
	}
}

func TestConfiguredLocationsSkipDiscovery(t *testing.T) {
	fleet := newFleet(3)
	fleet.discErr = errors.New("must not be called")
	s := newScraper(t, Options{Devices: fleet, LocationIDs: []string{"loc-2"}})
	if err := s.WalkDevices(context.Background()); err != nil {
		t.Fatal(err)
	}
	if snap := s.Snapshot(); len(snap.Locations) != 1 || snap.Locations[0].ID != "loc-2" || snap.Locations[0].Name != "" {
		t.Fatalf("locations = %+v", snap.Locations)
	}
}

func TestConcurrencyIsBounded(t *testing.T) {
	fleet := newFleet(40)
	fleet.delay = 5 * time.Millisecond
	s := newScraper(t, Options{Devices: fleet, Concurrency: 3})
	_ = s.WalkDevices(context.Background())
	if got := fleet.maxInFlight.Load(); got != 3 {
		t.Fatalf("max in flight = %d, want exactly the bound 3", got)
	}
}

func TestRequestTimeoutAppliesPerLocation(t *testing.T) {
	fleet := newFleet(2)
	fleet.delay = time.Hour
	s := newScraper(t, Options{Devices: fleet, RequestTimeout: 20 * time.Millisecond})
	err := s.WalkDevices(context.Background())
	if err == nil {
		t.Fatal("want an error when every location times out")
	}
	for _, l := range s.Snapshot().Locations {
		if l.Up || l.LastError != context.DeadlineExceeded.Error() {
			t.Errorf("location %s = %+v, want a deadline error", l.ID, l)
		}
	}
}

// fakeRentals is an in-memory RentalAPI.
type fakeRentals struct {
	mu      sync.Mutex
	rentals []copri.Rental
	bikes   []copri.Bike
	err     error
}

func (f *fakeRentals) UserBikesOccupied(context.Context) ([]copri.Rental, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rentals, f.err
}

func (f *fakeRentals) BikesAll(context.Context) ([]copri.Bike, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bikes, f.err
}

func TestFailingOperatorDoesNotHideOthers(t *testing.T) {
	clk := newClock()
	good := &fakeRentals{rentals: []copri.Rental{{BookingID: "1", Bike: "FR1", State: copri.StateOccupied,
		LockState: copri.LockLocked, StartTime: clk.Now().Add(-30 * time.Hour)}}}
	bad := &fakeRentals{err: errors.New("Failure 1001: authentication failed")}
	s := newScraper(t, Options{
		Devices: newFleet(1), Now: clk.Now,
		Health: health.Params{RentalMaxDuration: 24 * time.Hour, LockMismatchGrace: time.Minute, TransitionGrace: time.Minute},
		Operators: []Operator{
			{Name: "good", API: good, Match: health.Match{Field: "alias"}},
			{Name: "bad", API: bad, BikesAll: true},
		},
	})
	err := s.WalkRentals(context.Background())
	if err == nil || err.Error() != "operator bad: user_bikes_occupied: Failure 1001: authentication failed" {
		t.Fatalf("err = %v", err)
	}
	snap := s.Snapshot()
	if src, _ := snap.Source("copri/good"); !src.Up || src.Walks != 1 {
		t.Errorf("good operator source = %+v", src)
	}
	if src, _ := snap.Source("copri/bad"); src.Up || src.Failures != 1 || !src.Walked {
		t.Errorf("bad operator source = %+v", src)
	}
	if len(snap.Operators) != 2 || snap.Operators[1].Name != "good" || len(snap.Operators[1].Rentals) != 1 {
		t.Errorf("operators = %+v", snap.Operators)
	}
	if len(snap.RentalFaults) != 1 || snap.RentalFaults[0].Kind != health.Overdue || snap.RentalFaults[0].Operator != "good" {
		t.Errorf("rental faults = %+v, want the overdue rental of good", snap.RentalFaults)
	}
}

func TestRunNeverOverlapsAndRecoversPanics(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the cron schedule")
	}
	fleet := newFleet(1)
	fleet.delay = 2500 * time.Millisecond // outlasts the 1s schedule
	var walks atomic.Int32
	s := newScraper(t, Options{Devices: fleet, Concurrency: 1,
		OnDeviceWalk: func(context.Context, *Snapshot) { walks.Add(1) }})
	ctx, cancel := context.WithTimeout(context.Background(), 5200*time.Millisecond)
	defer cancel()
	s.SetSchedule(mustSchedule(t, "@every 1s", "@every 1s"))
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fleet.maxInFlight.Load(); got != 1 {
		t.Fatalf("walks overlapped: %d device-list requests at once", got)
	}
	// First walk at start (0–2.5s), then the next turn after it (≈3–5.5s): 1 or 2 complete.
	if got := walks.Load(); got < 1 || got > 2 {
		t.Fatalf("completed walks = %d, want 1–2 with skipped turns", got)
	}

	// A walk whose subscriber panics is recovered by the scheduler, which goes on.
	fleet2 := newFleet(1)
	s2 := newScraper(t, Options{Devices: fleet2,
		OnDeviceWalk: func(context.Context, *Snapshot) { panic("subscriber bug") }})
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel2()
	s2.SetSchedule(mustSchedule(t, "@every 1s", "@every 1s"))
	if err := s2.Run(ctx2); err != nil {
		t.Fatal(err)
	}
	if got := fleet2.calls.Load(); got < 2 {
		t.Fatalf("schedule stopped after a panicking walk: %d walks", got)
	}
}

func TestPanickingLocationIsThatLocationsFailure(t *testing.T) {
	fleet := newFleet(2)
	fleet.panicOn = "loc-0"
	s := newScraper(t, Options{Devices: fleet})
	if err := s.WalkDevices(context.Background()); err != nil {
		t.Fatal(err)
	}
	snap := s.Snapshot()
	if l := location(t, snap, "loc-0"); l.Up || l.LastError != "panic while walking location: fake panic" {
		t.Errorf("panicking location = %+v", l)
	}
	if l := location(t, snap, "loc-1"); !l.Up {
		t.Errorf("other location = %+v", l)
	}
}

func TestRunRejectsBadSchedule(t *testing.T) {
	s := newScraper(t, Options{Devices: newFleet(1)})
	_, err := ParseSchedule("every thirty seconds", "@every 1m")
	if err == nil || err.Error()[:17] != "schedule.devices " {
		t.Fatalf("err = %v", err)
	}
	if err := s.Run(context.Background()); err == nil {
		t.Fatal("Run without a schedule started")
	}
}

func mustSchedule(t *testing.T, devices, rentals string) Schedule {
	t.Helper()
	sch, err := ParseSchedule(devices, rentals)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

func TestSnapshotDeviceLookup(t *testing.T) {
	s := newScraper(t, Options{Devices: newFleet(5)})
	_ = s.WalkDevices(context.Background())
	snap := s.Snapshot()
	for _, tc := range []struct {
		loc, dev string
		want     bool
	}{
		{"loc-0", "loc-0-d1", true},
		{"loc-4", "loc-4-d2", true},
		{"loc-2", "loc-2-d2", true},
		{"loc-2", "loc-3-d1", false}, // right device, wrong location
		{"loc-9", "loc-9-d1", false},
		{"", "loc-0-d1", false},
	} {
		d, ok := snap.Device(tc.loc, tc.dev)
		if ok != tc.want || (ok && d.ID != tc.dev) {
			t.Errorf("Device(%q, %q) = %v, %v; want found=%v", tc.loc, tc.dev, d, ok, tc.want)
		}
	}
}

// A reload replaces clients and tunables but keeps fault episodes (their
// FirstSeen and Walks), drops what is no longer configured, and adds what is.
func TestReconfigureKeepsStateAndAppliesChanges(t *testing.T) {
	fleet := newFleet(3)
	clk := newClock()
	published := 0
	s := newScraper(t, Options{
		Devices: fleet, Now: clk.Now, LocationIDs: []string{"loc-0", "loc-1"},
		Operators: []Operator{{Name: "old", API: &fakeRentals{}}},
		OnPublish: func(*Snapshot) { published++ },
	})
	for range 2 {
		if err := s.WalkDevices(context.Background()); err != nil {
			t.Fatal(err)
		}
		clk.Add(30 * time.Second)
	}
	before := s.Snapshot()
	if faultsAt(before, "loc-0") != 1 || before.Faults[0].Walks != 2 {
		t.Fatalf("faults before reload = %+v", before.Faults)
	}
	firstSeen := before.Faults[0].FirstSeen

	other := newFleet(3)
	err := s.Reconfigure(Options{
		Devices: other, LocationIDs: []string{"loc-0", "loc-2"}, Concurrency: 2, StaleAfter: time.Minute,
		Operators: []Operator{{Name: "new", API: &fakeRentals{}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	snap := s.Snapshot()
	if snap == before || published != 3 {
		t.Fatalf("reload published no snapshot (published %d)", published)
	}
	var ids []string
	for _, l := range snap.Locations {
		ids = append(ids, l.ID)
	}
	if fmt.Sprint(ids) != "[loc-0 loc-2]" {
		t.Errorf("locations after reload = %v", ids)
	}
	if _, ok := snap.Source("copri/old"); ok {
		t.Error("removed operator still a source")
	}
	if _, ok := snap.Source("copri/new"); !ok {
		t.Error("added operator is not a source")
	}
	if faultsAt(snap, "loc-1") != 0 {
		t.Error("faults of a removed location kept")
	}
	if err := s.WalkDevices(context.Background()); err != nil {
		t.Fatal(err)
	}
	if other.calls.Load() != 2 || fleet.calls.Load() != 4 {
		t.Errorf("calls: new client %d (want 2), old client %d (want 4)", other.calls.Load(), fleet.calls.Load())
	}
	snap = s.Snapshot()
	for _, f := range snap.Faults {
		if f.LocationID == "loc-0" && (f.Walks != 3 || !f.FirstSeen.Equal(firstSeen)) {
			t.Errorf("episode restarted by reload: %+v (first seen %v)", f, firstSeen)
		}
	}
	if faultsAt(snap, "loc-2") != 1 {
		t.Error("added location not walked")
	}
	if err := s.Reconfigure(Options{}); err == nil {
		t.Error("reload without a device client accepted")
	}
}

func TestRescheduleChangesARunningSchedule(t *testing.T) {
	fleet := newFleet(1)
	s := newScraper(t, Options{Devices: fleet, LocationIDs: []string{"loc-0"}})
	if err := s.Reschedule("@every 1s", "nonsense"); err == nil {
		t.Error("bad rentals spec accepted without a running Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	s.SetSchedule(mustSchedule(t, "@every 1h", "@every 1h"))
	go func() { done <- s.Run(ctx) }()
	waitFor(t, func() bool { return fleet.calls.Load() == 1 }) // the first walk
	if err := s.Reschedule("@every 1h", "bad spec"); err != nil {
		t.Errorf("rentals spec checked although no operator is configured: %v", err)
	}
	if err := s.Reschedule("every second", "@every 1h"); err == nil || !strings.Contains(err.Error(), `schedule.devices "every second"`) {
		t.Errorf("bad devices spec: err = %v", err)
	}
	if err := s.Reschedule("@every 1s", "@every 1h"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return fleet.calls.Load() >= 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
