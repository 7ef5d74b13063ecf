// Package scrape walks the fleet on a schedule: every Bikeep location's
// devices and every COPRI operator's open rentals. Each walk feeds the fault
// tracker and publishes a new immutable Snapshot, swapped in atomically, that
// the exporter, the status page and the remediation engine read.
//
// One failing location or operator never blanks the others: each keeps its
// last good data until health.stale_after, after which its data drops out
// while its failure stays visible. Absence is not health: a device list
// answered without its list fails the location, and one with unreadable
// entries makes it partial, its missing devices carried with their last
// known state (see LocationStatus).
package scrape

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/clients/copri"
	"github.com/fleetd/fleetd/internal/clients/limits"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/record"
)

// DeviceAPI is the part of the Bikeep client a device walk needs.
type DeviceAPI interface {
	ListLocations(ctx context.Context) ([]bikeep.Location, error)
	ListLocationDevices(ctx context.Context, locationID string) ([]bikeep.Device, error)
}

// RecordAPI is implemented by clients that decode a device list straight
// into compact records (bikeep.Client does), sharing what did not change
// with prev, the location's records from the previous walk. The walk uses
// it when the DeviceAPI offers it; otherwise full devices are compacted.
type RecordAPI interface {
	WalkLocationDevices(ctx context.Context, locationID string, prev []record.Device) ([]record.Device, error)
}

// RentalAPI is the part of a COPRI client a rental walk needs. The client
// manages its own session (login, reuse, one re-login).
type RentalAPI interface {
	UserBikesOccupied(ctx context.Context) ([]copri.Rental, error)
	BikesAll(ctx context.Context) ([]copri.Bike, error)
}

// Operator is one COPRI backend to walk.
type Operator struct {
	Name     string
	API      RentalAPI
	BikesAll bool
	Match    health.Match
	// RequestTimeout bounds each request of the walk; 0 means no extra bound.
	RequestTimeout time.Duration
}

// Options configure a Scraper.
type Options struct {
	Devices DeviceAPI
	// LocationIDs is the configured list of locations; empty means discover
	// them through the Location API on every walk.
	LocationIDs []string
	// Concurrency bounds the device-list requests in flight.
	Concurrency int
	// RequestTimeout bounds each device-list request, retries included.
	RequestTimeout time.Duration
	Operators      []Operator
	Health         health.Params
	// StaleAfter is how long a location's or operator's last good data is
	// reported after its walks started failing.
	StaleAfter time.Duration
	// ForgetAfter is how long a device missing from partial lists of its
	// location is carried after it was last read (remediation.forget_after).
	// Zero carries it until a complete list or staleness ends it.
	ForgetAfter time.Duration
	// Owns, if set, says which locations this replica walks and reports
	// (the slots it holds, with several replicas): the ids to walk are
	// chosen by it once per walk, discovery still lists every location,
	// and a location no longer owned is forgotten — its new owner reports
	// it, never two replicas at once.
	Owns func(locationID string) bool
	// OnDeviceWalk, if set, is called with the new snapshot after every
	// completed device walk, in the walk's goroutine.
	OnDeviceWalk func(ctx context.Context, s *Snapshot)
	// OnPublish, if set, is called with every snapshot a walk publishes
	// (device or rental), in the walk's goroutine, before OnDeviceWalk.
	OnPublish func(s *Snapshot)
	// Now is the clock; time.Now when nil.
	Now    func() time.Time
	Logger *slog.Logger
}

// Scraper runs device and rental walks and holds the latest Snapshot.
type Scraper struct {
	// opts is replaced whole by Apply; each walk works with the options it
	// started with and never with fleet state: it hands its results to
	// the apply functions (applyDeviceWalk, applyRentalWalk), which alone,
	// under mu, change the fleet state below, as Apply does.
	opts atomic.Pointer[Options]
	log  *slog.Logger
	now  func() time.Time

	// mu serialises the state changes of device and rental walks, which run
	// on separate schedules and may overlap each other (never themselves).
	mu        sync.Mutex
	tracker   *health.Tracker
	sources   map[string]*SourceStatus
	locations map[string]*LocationStatus
	operators map[string]*OperatorStatus
	// carriedSeen is when each carried device was last read, by location.
	carriedSeen map[string]map[string]time.Time

	snap         atomic.Pointer[Snapshot]
	deviceWalked atomic.Bool

	schedMu  sync.Mutex
	schedule Schedule
	running  *runningCron // of the running Run, nil otherwise
}

// New returns a Scraper. It performs no I/O.
func New(opts Options) (*Scraper, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Scraper{
		log:       opts.Logger,
		now:       opts.Now,
		tracker:   health.NewTracker(opts.Health),
		sources:   map[string]*SourceStatus{SourceBikeep: {Name: SourceBikeep}},
		locations: map[string]*LocationStatus{},
		operators: map[string]*OperatorStatus{},

		carriedSeen: map[string]map[string]time.Time{},
	}
	s.opts.Store(&opts)
	for _, op := range opts.Operators {
		name := CopriSource(op.Name)
		s.sources[name] = &SourceStatus{Name: name}
		s.operators[op.Name] = &OperatorStatus{Name: op.Name}
	}
	for _, id := range opts.LocationIDs {
		s.locations[id] = &LocationStatus{ID: id}
	}
	s.mu.Lock()
	s.publishLocked()
	s.mu.Unlock()
	return s, nil
}

// check validates o and applies the defaults that do not depend on a
// previous configuration.
func (o *Options) check() error {
	if err := o.Validate(); err != nil {
		return err
	}
	if o.Concurrency < 1 {
		o.Concurrency = 1
	}
	return nil
}

// Validate reports what New, Prepare or Reconfigure would refuse in o.
func (o *Options) Validate() error {
	if o.Devices == nil {
		return errors.New("scrape: Options.Devices is required")
	}
	seen := map[string]bool{}
	for _, op := range o.Operators {
		if op.Name == "" || op.API == nil {
			return errors.New("scrape: every operator needs a name and an API")
		}
		if seen[op.Name] {
			return fmt.Errorf("scrape: duplicate operator %q", op.Name)
		}
		seen[op.Name] = true
	}
	return nil
}

// Prepared is a validated set of options for Apply.
type Prepared struct{ opts Options }

// Prepare validates opts for Apply. It has no effect on any Scraper, so a
// reload can prepare everything before it changes anything.
func Prepare(opts Options) (*Prepared, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	return &Prepared{opts: opts}, nil
}

// Options returns the options p holds, for New.
func (p *Prepared) Options() Options { return p.opts }

// Reconfigure is Prepare and Apply.
func (s *Scraper) Reconfigure(opts Options) error {
	p, err := Prepare(opts)
	if err != nil {
		return err
	}
	s.Apply(p)
	return nil
}

// Apply replaces the clients and tunables (config reload) and keeps the
// fleet state: last good data, fault episodes and their since-times, walk
// counters. Walks in progress finish with the options they started with;
// their results are applied to the fleet as it is then, so a location or
// operator dropped here is not brought back by them. Operators and
// configured locations that are gone are forgotten at once; new ones
// appear on their first walk. Now, Logger and the callbacks stay those
// given to New. The schedule is SetSchedule's.
func (s *Scraper) Apply(p *Prepared) {
	opts := p.opts
	old := s.options()
	opts.Now, opts.Logger = old.Now, old.Logger
	opts.OnPublish, opts.OnDeviceWalk = old.OnPublish, old.OnDeviceWalk

	s.mu.Lock()
	s.tracker.SetParams(opts.Health)
	s.setOperatorsLocked(opts.Operators)
	if len(opts.LocationIDs) > 0 {
		s.setLocationsLocked(opts.LocationIDs)
	}
	// With discovery on, the next successful discovery prunes locations.
	s.opts.Store(&opts)
	snap := s.publishLocked()
	s.mu.Unlock()
	if opts.OnPublish != nil {
		opts.OnPublish(snap)
	}
}

// setOperatorsLocked makes ops the walked operators: new ones start
// unwalked, removed ones are forgotten with their rental faults.
func (s *Scraper) setOperatorsLocked(ops []Operator) {
	keep := map[string]bool{}
	for _, op := range ops {
		keep[op.Name] = true
		if s.operators[op.Name] == nil {
			name := CopriSource(op.Name)
			s.sources[name] = &SourceStatus{Name: name}
			s.operators[op.Name] = &OperatorStatus{Name: op.Name}
		}
	}
	for name := range s.operators {
		if !keep[name] {
			delete(s.operators, name)
			delete(s.sources, CopriSource(name))
			s.tracker.ForgetOperator(name)
		}
	}
}

// setLocationsLocked makes ids the walked locations: new ones start
// unwalked, the others are forgotten with their faults.
func (s *Scraper) setLocationsLocked(ids []string) {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
		if s.locations[id] == nil {
			s.locations[id] = &LocationStatus{ID: id}
		}
	}
	for id := range s.locations {
		if !want[id] {
			s.forgetLocationLocked(id)
		}
	}
}

func (s *Scraper) forgetLocationLocked(id string) {
	delete(s.locations, id)
	delete(s.carriedSeen, id)
	s.tracker.ForgetLocation(id)
}

func (s *Scraper) options() *Options { return s.opts.Load() }

// Snapshot returns the latest snapshot; never nil.
func (s *Scraper) Snapshot() *Snapshot { return s.snap.Load() }

// Ready reports whether the first device walk has completed.
func (s *Scraper) Ready() bool { return s.deviceWalked.Load() }

type locationResult struct {
	id      string
	devices []record.Device
	err     error
	// partial is a decode problem with some devices; the others are good.
	partial error
	// undecodable is the number of entries partial names; decodeErr the
	// first one's error, capped for display.
	undecodable int
	decodeErr   string
}

// maxDecodeError caps LocationStatus.DecodeError: it is shown on the status
// page and holds vendor-influenced text.
const maxDecodeError = 256

// deviceWalk is what one device walk found, handed whole to
// applyDeviceWalk.
type deviceWalk struct {
	start, end time.Time
	results    []locationResult
	// discovered is nil unless the walk discovered its locations and
	// discovery succeeded.
	discovered map[string]bikeep.Location
	discErr    error
	// owned are the locations this replica walked (Options.Owns); nil
	// when it walks them all.
	owned map[string]bool
}

// WalkDevices walks every location once and publishes a new snapshot. The
// returned error describes a failed source (discovery failed or every
// location failed); single failing locations are reported in the snapshot.
func (s *Scraper) WalkDevices(ctx context.Context) error {
	o := s.options()
	w := deviceWalk{start: s.now()}
	w.results = s.fetchLocations(ctx, o, &w)
	w.end = s.now()
	snap, walkErr := s.applyDeviceWalk(o, &w)
	if o.OnPublish != nil {
		o.OnPublish(snap)
	}
	s.deviceWalked.Store(true)
	if o.OnDeviceWalk != nil {
		// Device walks never overlap, so subscribers see snapshots in order.
		o.OnDeviceWalk(ctx, snap)
	}
	return walkErr
}

// applyDeviceWalk folds w, walked with o, into the fleet state as it is
// now: a reload during the walk may have changed the locations. Results
// count only for locations walked under the current options; discovery
// decides the locations only while discovery is still configured.
func (s *Scraper) applyDeviceWalk(o *Options, w *deviceWalk) (*Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	configured := s.options().LocationIDs
	discovering := w.discovered != nil && len(configured) == 0
	if discovering {
		for id := range w.discovered {
			if s.locations[id] == nil {
				s.locations[id] = &LocationStatus{ID: id}
			}
		}
	}
	for id := range w.owned {
		// A configured location taken over from another replica was
		// forgotten while it was not ours.
		if s.locations[id] == nil && slices.Contains(configured, id) {
			s.locations[id] = &LocationStatus{ID: id}
		}
	}
	applied, failed := s.applyLocationsLocked(o, w)
	if discovering {
		for id, loc := range s.locations {
			l, ok := w.discovered[id]
			if !ok {
				// Gone from the Location API: no longer ours to report.
				s.forgetLocationLocked(id)
				continue
			}
			loc.Name, loc.Type = l.Name, l.Type
			loc.ExpectedDevices = l.Devices.Total
		}
	}
	if w.owned != nil {
		for id := range s.locations {
			if !w.owned[id] {
				// Another replica's: it reports the location.
				s.forgetLocationLocked(id)
			}
		}
	}
	for id, loc := range s.locations {
		if !loc.Up && loc.Devices != nil && w.end.Sub(loc.LastSuccess) > o.StaleAfter {
			s.log.Warn("location data is stale, no longer reported", "location_id", id, "last_success", loc.LastSuccess)
			loc.Stale, loc.Devices, loc.Carried = true, nil, nil
			delete(s.carriedSeen, id)
			s.tracker.ForgetLocation(id)
		}
	}
	var walkErr error
	switch {
	case w.discErr != nil:
		walkErr = fmt.Errorf("discover locations: %w", w.discErr)
	case applied > 0 && failed == applied:
		walkErr = fmt.Errorf("all %d locations failed", failed)
	}
	s.recordWalkLocked(SourceBikeep, w.start, w.end, walkErr)
	if failed > 0 {
		s.log.Info("device walk finished with failures", "locations", applied, "failed", failed, "duration", w.end.Sub(w.start))
	} else {
		s.log.Debug("device walk finished", "locations", applied, "duration", w.end.Sub(w.start))
	}
	return s.publishLocked(), walkErr
}

// applyLocationsLocked applies each location's result and returns how many
// it applied and how many of those failed. A location no longer walked
// (dropped by a reload during the walk) is skipped: its result must not
// bring it or its faults back.
func (s *Scraper) applyLocationsLocked(o *Options, w *deviceWalk) (applied, failed int) {
	readElsewhere := readByWalk(w.results)
	for _, r := range w.results {
		loc := s.locations[r.id]
		if loc == nil {
			continue
		}
		applied++
		if r.err != nil {
			failed++
			if loc.Up || loc.FailingSince.IsZero() {
				loc.FailingSince = w.end
			}
			loc.Up = false
			loc.LastError = r.err.Error()
			loc.Undecodable, loc.DecodeError = 0, ""
			s.log.Warn("location walk failed", "location_id", r.id, "err", r.err)
			continue
		}
		if r.partial != nil {
			carried := s.carryLocked(o, loc, r, w.end, readElsewhere)
			s.log.Warn("location walk decoded only part of the devices; the missing ones keep their last known state",
				"location_id", r.id, "undecodable", r.undecodable, "carried", len(carried), "err", r.partial)
			loc.Carried, loc.Undecodable, loc.DecodeError = carried, r.undecodable, r.decodeErr
			loc.UndecodableTotal += uint64(r.undecodable)
			s.tracker.ObservePartialRecords(w.end, r.id, r.devices, carried)
		} else {
			loc.Carried, loc.Undecodable, loc.DecodeError = nil, 0, ""
			delete(s.carriedSeen, r.id)
			s.tracker.ObserveRecords(w.end, r.id, r.devices)
		}
		loc.Up, loc.LastSuccess, loc.LastError, loc.Stale = true, w.end, "", false
		loc.FailingSince = time.Time{}
		loc.Devices = r.devices
	}
	return applied, failed
}

// readByWalk returns the ids of every device read by this walk, in any
// location, when some location's list was partial (nil otherwise): a device
// read elsewhere has moved and is not carried where it was.
func readByWalk(results []locationResult) map[string]bool {
	n, partial := 0, false
	for i := range results {
		n += len(results[i].devices)
		partial = partial || results[i].partial != nil
	}
	if !partial {
		return nil
	}
	read := make(map[string]bool, n)
	for i := range results {
		for j := range results[i].devices {
			read[results[i].devices[j].ID] = true
		}
	}
	return read
}

// carryLocked returns the devices a partial list r of loc lacks that keep
// their last known record: those of loc's previous list (read at
// loc.LastSuccess) or already carried, not read by this walk, and read
// within o.ForgetAfter. It records when each was last read.
func (s *Scraper) carryLocked(o *Options, loc *LocationStatus, r locationResult, now time.Time, read map[string]bool) []record.Device {
	prevSeen := s.carriedSeen[loc.ID]
	seen := make(map[string]time.Time)
	var carried []record.Device
	consider := func(d *record.Device, at time.Time) {
		if read[d.ID] || (o.ForgetAfter > 0 && now.Sub(at) > o.ForgetAfter) {
			return
		}
		if _, dup := seen[d.ID]; dup {
			return
		}
		seen[d.ID] = at
		carried = append(carried, *d)
	}
	for i := range loc.Devices {
		consider(&loc.Devices[i], loc.LastSuccess)
	}
	for i := range loc.Carried {
		consider(&loc.Carried[i], prevSeen[loc.Carried[i].ID])
	}
	if len(carried) == 0 {
		delete(s.carriedSeen, loc.ID)
		return nil
	}
	s.carriedSeen[loc.ID] = seen
	return carried
}

// discover lists the locations of the Location API, in its order and by
// id. When it fails, the walk keeps to the locations known before, so a
// Location API outage does not blind fleetd.
func (s *Scraper) discover(ctx context.Context, o *Options) ([]string, map[string]bikeep.Location, error) {
	rctx, cancel := s.requestContext(ctx, o.RequestTimeout)
	locs, err := o.Devices.ListLocations(rctx)
	cancel()
	if err != nil {
		s.log.Warn("location discovery failed; walking the locations known before", "err", err)
		return nil, nil, err
	}
	found := make(map[string]bikeep.Location, len(locs))
	ids := make([]string, 0, len(locs))
	for _, l := range locs {
		if l.ID == "" {
			continue
		}
		if _, dup := found[l.ID]; !dup {
			ids = append(ids, l.ID)
		}
		found[l.ID] = l
	}
	// The discovered locations join the fleet when the walk is applied.
	return ids, found, nil
}

func (s *Scraper) requestContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// previousDevices returns each location's last good records, for the
// decoder to share what did not change.
func (s *Scraper) previousDevices(ids []string) [][]record.Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := make([][]record.Device, len(ids))
	for i, id := range ids {
		if l := s.locations[id]; l != nil {
			prev[i] = l.Devices
		}
	}
	return prev
}

// fetchLocations walks the locations of this walk, at most o.Concurrency
// requests in flight, and fills w's discovery and ownership. Discovery
// takes one worker's first turn while the others already walk the
// locations known from the walks before: waiting for the list first put a
// whole request's latency, and its decoding, in front of every walk. What
// discovery adds is queued when it answers; what it no longer lists is not
// started, and the result of one already started is dropped, so the walk
// covers exactly the locations it would have after a serial discovery.
func (s *Scraper) fetchLocations(ctx context.Context, o *Options, w *deviceWalk) []locationResult {
	q := &locationQueue{owns: o.Owns}
	discovering := len(o.LocationIDs) == 0
	if discovering {
		q.pending, q.ready = true, make(chan struct{})
		q.add(s.knownLocations())
	} else {
		q.add(o.LocationIDs)
	}
	// The last good records are read (a copy) now, for the decoder to
	// share what did not change; the walk reads no other fleet state.
	q.prev = s.previousDevices(q.ids)
	var (
		mu      sync.Mutex
		results []locationResult
		wg      sync.WaitGroup
	)
	// With discovery the first worker starts on it: the queue may be
	// empty until it answers (the first walk knows no location).
	workers := min(o.Concurrency, max(len(q.ids), 1))
	if discovering {
		workers = o.Concurrency
	}
	for n := range workers {
		wg.Go(func() {
			if n == 0 && discovering {
				s.discoverInto(ctx, o, q)
			}
			var mine []locationResult
			for {
				id, prev, ok := q.take()
				if !ok {
					break
				}
				mine = append(mine, s.fetchLocation(ctx, o, id, prev))
			}
			mu.Lock()
			results = append(results, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	w.discovered, w.discErr = q.listed, q.err
	if w.discovered != nil {
		results = slices.DeleteFunc(results, func(r locationResult) bool {
			_, listed := w.discovered[r.id]
			return !listed
		})
	}
	if o.Owns != nil {
		w.owned = make(map[string]bool, len(results))
		for _, r := range results {
			w.owned[r.id] = true
		}
	}
	return results
}

// discoverInto runs discovery for q. The other workers wait on its answer
// once the known locations are taken, so it answers whatever happens: a
// panic is a failed discovery, as it is a failed location in fetchLocation.
func (s *Scraper) discoverInto(ctx context.Context, o *Options, q *locationQueue) {
	var (
		ids   []string
		found map[string]bikeep.Location
		err   error
	)
	defer func() {
		if p := recover(); p != nil {
			ids, found, err = nil, nil, fmt.Errorf("panic while discovering locations: %v", p)
		}
		q.discovered(ids, found, err, s.previousDevices)
	}()
	ids, found, err = s.discover(ctx, o)
}

// knownLocations are the locations of the fleet state, sorted: those a
// walk starts on before discovery answers, and walks when it fails.
func (s *Scraper) knownLocations() []string {
	s.mu.Lock()
	ids := make([]string, 0, len(s.locations))
	for id := range s.locations {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	sort.Strings(ids)
	return ids
}

// locationQueue hands a walk's workers their locations: first those known
// before, then those discovery adds.
type locationQueue struct {
	owns func(string) bool
	mu   sync.Mutex
	ids  []string
	prev [][]record.Device
	next int
	// pending is true until discovery answers, and ready is closed then.
	pending bool
	ready   chan struct{}
	// listed is what discovery found (nil if it failed or did not run);
	// err why it failed.
	listed map[string]bikeep.Location
	err    error
}

// add queues the ids this replica owns that are not queued yet. Callers
// hold mu or own q alone.
func (q *locationQueue) add(ids []string) {
	queued := make(map[string]bool, len(q.ids))
	for _, id := range q.ids {
		queued[id] = true
	}
	for _, id := range ids {
		if !queued[id] && (q.owns == nil || q.owns(id)) {
			queued[id] = true
			q.ids = append(q.ids, id)
		}
	}
}

// discovered queues what discovery found and releases the workers waiting
// for it. On failure the known locations are all the walk has.
func (q *locationQueue) discovered(ids []string, found map[string]bikeep.Location, err error, prev func([]string) [][]record.Device) {
	q.mu.Lock()
	q.listed, q.err = found, err
	if err == nil {
		n := len(q.ids)
		q.add(ids)
		q.prev = append(q.prev, prev(q.ids[n:])...)
	}
	q.pending = false
	q.mu.Unlock()
	close(q.ready)
}

// take returns the next location to walk with its previous records, or
// false once there is none and discovery has answered.
func (q *locationQueue) take() (id string, prev []record.Device, ok bool) {
	for {
		q.mu.Lock()
		for q.next < len(q.ids) {
			i := q.next
			q.next++
			if q.listed != nil {
				if _, listed := q.listed[q.ids[i]]; !listed {
					continue // gone from the Location API
				}
			}
			id, prev := q.ids[i], q.prev[i]
			q.mu.Unlock()
			return id, prev, true
		}
		pending := q.pending
		q.mu.Unlock()
		if !pending {
			return "", nil, false
		}
		<-q.ready
	}
}

func (s *Scraper) fetchLocation(ctx context.Context, o *Options, id string, prev []record.Device) (r locationResult) {
	r.id = id
	// A panic in a worker goroutine would escape the scheduler's recovery and
	// end the process; make it this location's failure instead.
	defer func() {
		if p := recover(); p != nil {
			r.devices, r.err = nil, fmt.Errorf("panic while walking location: %v", p)
		}
	}()
	if err := ctx.Err(); err != nil {
		r.err = err
		return r
	}
	rctx, cancel := s.requestContext(ctx, o.RequestTimeout)
	defer cancel()
	var (
		devices []record.Device
		err     error
	)
	if api, ok := o.Devices.(RecordAPI); ok {
		devices, err = api.WalkLocationDevices(rctx, id, prev)
	} else {
		devices, err = compactDevices(o.Devices.ListLocationDevices(rctx, id))
	}
	var partial *bikeep.PartialDecodeError
	switch {
	case errors.As(err, &partial):
		r.devices, r.partial = devices, err
		r.undecodable = max(len(partial.Bad), 1)
		if len(partial.Bad) > 0 {
			r.decodeErr, _ = limits.Text(partial.Bad[0].Error(), maxDecodeError)
		} else {
			r.decodeErr, _ = limits.Text(err.Error(), maxDecodeError)
		}
	case err != nil:
		r.err = err
	default:
		r.devices = devices
	}
	if r.err == nil {
		r.dropBlank()
	}
	return r
}

// compactDevices turns a full device list into records with the walk's
// checks (Device.Compact): a device whose id fails them is undecodable,
// like one the streaming decoder refuses.
func compactDevices(devs []bikeep.Device, err error) ([]record.Device, error) {
	var partial *bikeep.PartialDecodeError
	if err != nil && !errors.As(err, &partial) {
		return nil, err
	}
	out := make([]record.Device, 0, len(devs))
	var bad []bikeep.ItemError
	for i := range devs {
		c, cerr := devs[i].Compact()
		if cerr != nil {
			bad = append(bad, bikeep.ItemError{Index: i, Err: cerr})
			continue
		}
		out = append(out, c)
	}
	if len(bad) == 0 {
		return out, err
	}
	if partial == nil {
		partial = &bikeep.PartialDecodeError{Route: bikeep.RouteLocationDevices, Total: len(devs)}
	} else {
		p := *partial
		partial = &p
	}
	partial.Bad = append(slices.Clone(partial.Bad), bad...)
	return out, partial
}

// blank reports whether a decoded device record carries none of the fields
// its health is judged by, as a record cut short by the vendor does: it
// would classify as faultless, and is no evidence of that.
func blank(d *record.Device) bool {
	return d.Type == record.TypeNone && !d.HasState && d.LockState == record.LockNone &&
		d.HardwareState == record.HardwareNone && !d.HasHeartbeat
}

// dropBlank takes blank records out of the list and counts them as
// undecodable entries, which makes the list partial: the devices they
// stand for keep their last known state instead of passing for healthy.
func (r *locationResult) dropBlank() {
	n, first := 0, -1
	for i := range r.devices {
		if blank(&r.devices[i]) {
			n++
			if first < 0 {
				first = i
			}
		}
	}
	if n == 0 {
		return
	}
	id, _ := limits.Text(r.devices[first].ID, 64)
	err := fmt.Errorf("%d device record(s) without type, state, lock_state, hardware_state or heartbeat_v2, the first with id %q", n, id)
	kept := make([]record.Device, 0, len(r.devices)-n)
	for i := range r.devices {
		if !blank(&r.devices[i]) {
			kept = append(kept, r.devices[i])
		}
	}
	if r.partial == nil {
		r.decodeErr, _ = limits.Text(err.Error(), maxDecodeError)
	}
	r.devices, r.partial, r.undecodable = kept, errors.Join(r.partial, err), r.undecodable+n
}

type operatorResult struct {
	rentals []copri.Rental
	bikes   []copri.Bike
	err     error
}

// WalkRentals walks every COPRI operator once and publishes a new snapshot.
// The returned error joins the failures of the operators that failed.
func (s *Scraper) WalkRentals(ctx context.Context) error {
	o := s.options()
	if len(o.Operators) == 0 {
		return nil
	}
	start := s.now()
	results := make([]operatorResult, len(o.Operators))
	var snap *Snapshot
	defer func() {
		if snap != nil && o.OnPublish != nil {
			o.OnPublish(snap)
		}
	}()
	var wg sync.WaitGroup
	for i, op := range o.Operators {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = s.fetchOperator(ctx, op)
		}()
	}
	wg.Wait()
	var err error
	snap, err = s.applyRentalWalk(o, start, s.now(), results)
	return err
}

// applyRentalWalk folds the results of a rental walk with o into the fleet
// state as it is now: an operator removed by a reload during the walk is
// skipped.
func (s *Scraper) applyRentalWalk(o *Options, start, end time.Time, results []operatorResult) (*Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for i, op := range o.Operators {
		r, st := results[i], s.operators[op.Name]
		if st == nil {
			continue // removed by a reload during the walk
		}
		if r.err != nil {
			st.Up, st.LastError = false, r.err.Error()
			s.log.Warn("rental walk failed", "operator", op.Name, "err", r.err)
			errs = append(errs, fmt.Errorf("operator %s: %w", op.Name, r.err))
			if (st.Rentals != nil || st.Bikes != nil) && end.Sub(st.LastSuccess) > o.StaleAfter {
				st.Stale, st.Rentals, st.Bikes = true, nil, nil
				s.tracker.ForgetOperator(op.Name)
			}
		} else {
			st.Up, st.LastSuccess, st.LastError, st.Stale = true, end, "", false
			st.Rentals, st.Bikes = r.rentals, r.bikes
			s.tracker.ObserveOperator(end, op.Name, op.Match, r.rentals, r.bikes)
		}
		s.recordWalkLocked(CopriSource(op.Name), start, end, r.err)
	}
	return s.publishLocked(), errors.Join(errs...)
}

func (s *Scraper) fetchOperator(ctx context.Context, op Operator) (r operatorResult) {
	defer func() {
		if p := recover(); p != nil {
			r = operatorResult{err: fmt.Errorf("panic while walking operator: %v", p)}
		}
	}()
	rctx, cancel := s.requestContext(ctx, op.RequestTimeout)
	defer cancel()
	r.rentals, r.err = op.API.UserBikesOccupied(rctx)
	if r.err != nil {
		r.err = fmt.Errorf("user_bikes_occupied: %w", r.err)
		return r
	}
	if r.rentals == nil {
		r.rentals = []copri.Rental{}
	}
	if op.BikesAll {
		bctx, bcancel := s.requestContext(ctx, op.RequestTimeout)
		defer bcancel()
		r.bikes, r.err = op.API.BikesAll(bctx)
		if r.err != nil {
			r.err = fmt.Errorf("bikes_all: %w", r.err)
		}
	}
	return r
}

func (s *Scraper) recordWalkLocked(source string, start, end time.Time, err error) {
	st := s.sources[source]
	st.Walked = true
	st.Walks++
	st.LastDuration = end.Sub(start)
	if err != nil {
		st.Up = false
		st.Failures++
		st.LastError = err.Error()
		return
	}
	st.Up, st.LastSuccess, st.LastError = true, end, ""
}

// publishLocked builds and stores a new snapshot from the current state.
func (s *Scraper) publishLocked() *Snapshot {
	snap := &Snapshot{
		Taken:        s.now(),
		Sources:      make([]SourceStatus, 0, len(s.sources)),
		Locations:    make([]LocationStatus, 0, len(s.locations)),
		Operators:    make([]OperatorStatus, 0, len(s.operators)),
		Faults:       s.tracker.Faults(),
		RentalFaults: s.tracker.RentalFaults(),
	}
	for _, st := range s.sources {
		snap.Sources = append(snap.Sources, *st)
	}
	for _, l := range s.locations {
		snap.Locations = append(snap.Locations, *l)
	}
	for _, o := range s.operators {
		snap.Operators = append(snap.Operators, *o)
	}
	sort.Slice(snap.Sources, func(i, j int) bool { return snap.Sources[i].Name < snap.Sources[j].Name })
	sort.Slice(snap.Locations, func(i, j int) bool { return snap.Locations[i].ID < snap.Locations[j].ID })
	sort.Slice(snap.Operators, func(i, j int) bool { return snap.Operators[i].Name < snap.Operators[j].Name })
	s.snap.Store(snap)
	return snap
}
