package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Sim is a simulated Bikeep + COPRI backend. All methods are safe for
// concurrent use.
type Sim struct {
	opts Options
	log  *slog.Logger

	// mu guards every mutable field of the fleet below and of its
	// locations, devices, bikes and rentals. Request handlers take it for
	// reading; Step, commands and the test hooks take it for writing.
	mu        sync.RWMutex
	fleet     *fleet
	locByID   map[string]*location
	devByID   map[string]*device
	bikeByID  map[string]*bike
	faulty    []*device // devices with at least one fault
	commands  map[string]*command
	active    []*command // commands not yet final
	cmdOrder  []*command // commands in creation order, for pruning
	cmdCounts map[string]map[string]int64
	// powerCycles counts sync-device commands with power_cycle per device.
	powerCycles map[string]int64
	tokens      map[string]time.Time // access token → expiry
	sessions    map[string]struct{}  // COPRI authcookies
	copriFail   bool
	evolveRng   *rand.Rand
	idRng       *rand.Rand // command ids
	lastEvolve  time.Time
	zone        *time.Location // COPRI's Europe/Berlin

	// locList caches the serialized location list; nil after any change.
	locList atomic.Pointer[cachedBody]

	requests map[string]*atomic.Int64 // fixed at New; route → count
	injected map[string]*atomic.Int64 // fixed at New; error kind → count
	reqSeq   atomic.Uint64            // drives deterministic error injection

	done chan struct{}
}

// New builds a simulator with a fleet generated from opts.Seed.
func New(opts Options) (*Sim, error) {
	if opts.Locations < 0 || opts.DevicesPerLocation < 0 {
		return nil, errors.New("sim: negative fleet size")
	}
	if opts.FaultRate < 0 || opts.FaultRate > 1 || opts.CureRate < 0 || opts.CureRate > 1 {
		return nil, fmt.Errorf("sim: fault rate %v and cure rate %v must be in [0,1]", opts.FaultRate, opts.CureRate)
	}
	if opts.ErrorRate < 0 || opts.ErrorRate > 1 {
		return nil, fmt.Errorf("sim: error rate %v must be in [0,1]", opts.ErrorRate)
	}
	opts = opts.withDefaults()
	now := opts.Now()
	f := generate(opts, now)
	s := &Sim{
		opts:        opts,
		log:         opts.Logger,
		fleet:       f,
		locByID:     make(map[string]*location, len(f.locations)),
		devByID:     make(map[string]*device, len(f.devices)),
		bikeByID:    make(map[string]*bike, len(f.bikes)),
		commands:    map[string]*command{},
		cmdCounts:   map[string]map[string]int64{},
		powerCycles: map[string]int64{},
		tokens:      map[string]time.Time{},
		sessions:    map[string]struct{}{},
		evolveRng:   rand.New(rand.NewPCG(uint64(opts.Seed), 0xe7011e)),
		idRng:       rand.New(rand.NewPCG(uint64(opts.Seed), 0xc0ffee)),
		requests:    map[string]*atomic.Int64{},
		injected:    map[string]*atomic.Int64{},
		zone:        berlin(),
		done:        make(chan struct{}),
	}
	for _, l := range f.locations {
		s.locByID[l.id] = l
	}
	for _, d := range f.devices {
		s.devByID[d.id] = d
	}
	for _, b := range f.bikes {
		s.bikeByID[b.id] = b
	}
	for _, r := range routeNames() {
		s.requests[r] = new(atomic.Int64)
	}
	for _, k := range errorKinds() {
		s.injected[k] = new(atomic.Int64)
	}
	return s, nil
}

// Start listens on addr (":0" picks a port), serves Handler until ctx ends
// and runs the ticker that calls Step with Options.Now. It returns the base
// URL, e.g. "http://127.0.0.1:8080", once the listener is open; Done is
// closed when the server has stopped.
func (s *Sim) Start(ctx context.Context, addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("sim: listen: %w", err)
	}
	host, port, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		ln.Close()
		return "", fmt.Errorf("sim: listen address: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	base := "http://" + net.JoinHostPort(host, port)
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("sim: serve", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		s.tick(ctx)
		// Hanging requests end with ctx (they use it as base context), so a
		// short graceful shutdown is enough.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	}()
	go func() {
		wg.Wait()
		close(s.done)
	}()
	s.log.Info("sim: listening", "url", base, "locations", len(s.fleet.locations), "devices", len(s.fleet.devices))
	return base, nil
}

// Done is closed once the server started by Start has shut down.
func (s *Sim) Done() <-chan struct{} { return s.done }

// tick drives Step until ctx ends, often enough to resolve command steps.
func (s *Sim) tick(ctx context.Context) {
	every := min(max(s.opts.CommandStepDelay/4, 10*time.Millisecond), 250*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Step(s.opts.Now())
		}
	}
}

// Step advances command lifecycles and fault evolution to now. Fault
// evolution draws from the seeded generator, so the same sequence of Step
// calls gives the same faults. Its cost is O(changes + active commands).
func (s *Sim) Step(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceCommands(now)
	s.evolve(now)
}

// SetFault injects fault f into a device; FaultNone clears all its faults.
// Faults that make no sense for the device (lock_mismatch on a GUARD, a
// rental fault on a device without a bike) are refused.
func (s *Sim) SetFault(deviceID string, f FaultKind) error {
	if !f.valid() {
		return fmt.Errorf("sim: unknown fault kind %q", f)
	}
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devByID[deviceID]
	if !ok {
		return fmt.Errorf("sim: unknown device %q", deviceID)
	}
	if f == FaultNone {
		s.clearFaults(d, d.faults, now, "cleared")
		return nil
	}
	return s.addFault(d, f, now)
}

// SetStubborn makes sync-device never cure the device (on) or restores the
// normal cure odds (off): the command still succeeds, as a real device whose
// fault a re-sync cannot reach would report.
func (s *Sim) SetStubborn(deviceID string, on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devByID[deviceID]
	if !ok {
		return fmt.Errorf("sim: unknown device %q", deviceID)
	}
	d.stubborn = on
	return nil
}

// SetLocationError makes the device list of a location answer status (> 0)
// with the error envelope; 0 clears it. Unknown ids are ignored.
func (s *Sim) SetLocationError(locationID string, status int) {
	s.mu.RLock()
	l, ok := s.locByID[locationID]
	s.mu.RUnlock()
	if ok {
		l.errStatus.Store(int32(max(status, 0)))
	}
}

// SetCopriLoginFailure makes every COPRI authorization fail while on, as
// when the account is locked: turning it on also ends every open session,
// so clients notice on their next request, not only at their next login.
func (s *Sim) SetCopriLoginFailure(on bool) {
	s.mu.Lock()
	s.copriFail = on
	if on {
		clear(s.sessions)
	}
	s.mu.Unlock()
}

// Stats is a snapshot of what the simulator has seen and holds.
type Stats struct {
	// Requests counts requests per route template, e.g.
	// "GET /device/v1/locations/{id}/devices" or
	// "/APIjsonserver?request=bikes_all"; every route is present.
	Requests map[string]int64 `json:"requests"`
	// RequestsTotal is the sum of Requests.
	RequestsTotal int64 `json:"requests_total"`
	// InjectedErrors counts transport faults by kind (ErrorRate).
	InjectedErrors map[string]int64 `json:"injected_errors"`
	// Commands counts accepted commands per device id and command name.
	Commands map[string]map[string]int64 `json:"commands"`
	// CommandsTotal is the sum of Commands.
	CommandsTotal int64 `json:"commands_total"`
	// PowerCycles counts sync-device commands sent with power_cycle, per
	// device id.
	PowerCycles map[string]int64 `json:"power_cycles"`
	// Faults counts active faults by kind; every kind is present.
	Faults map[FaultKind]int `json:"faults"`
	// FaultyDevices is the number of devices with at least one fault.
	FaultyDevices int `json:"faulty_devices"`
	// OpenRentals is the number of open COPRI rentals.
	OpenRentals int `json:"open_rentals"`
}

// Stats returns a snapshot of the counters.
func (s *Sim) Stats() Stats {
	st := Stats{
		Requests:       make(map[string]int64, len(s.requests)),
		InjectedErrors: make(map[string]int64, len(s.injected)),
		Commands:       map[string]map[string]int64{},
		Faults:         map[FaultKind]int{},
	}
	for k, v := range s.requests {
		st.Requests[k] = v.Load()
		st.RequestsTotal += st.Requests[k]
	}
	for k, v := range s.injected {
		st.InjectedErrors[k] = v.Load()
	}
	for _, k := range allFaultKinds() {
		st.Faults[k] = 0
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for id, m := range s.cmdCounts {
		cp := make(map[string]int64, len(m))
		for name, n := range m {
			cp[name] = n
			st.CommandsTotal += n
		}
		st.Commands[id] = cp
	}
	st.PowerCycles = make(map[string]int64, len(s.powerCycles))
	for id, n := range s.powerCycles {
		st.PowerCycles[id] = n
	}
	for _, d := range s.faulty {
		for _, k := range d.faults.kinds() {
			st.Faults[k]++
		}
	}
	st.FaultyDevices = len(s.faulty)
	st.OpenRentals = len(s.fleet.rentals)
	return st
}

// LocationInfo describes a simulated location, for tests.
type LocationInfo struct {
	ID   string
	Name string
	// Type is the location's type, e.g. "BIKE_LOCKERS".
	Type    string
	Devices int
}

// DeviceInfo describes a simulated device, for tests.
type DeviceInfo struct {
	ID         string
	Alias      string
	Code       string
	HardwareID string
	// Type, PowerSaveStrategy and SleepState are the vendor's strings,
	// e.g. "BIKE_HOUSE_DOOR", "LOCAL_WAKEUP", "DEEP_SLEEP" ("" is awake).
	Type              string
	LocationID        string
	PowerSaveStrategy string
	SleepState        string
	Tags              []string
	// Commands is the sorted list of the device's commands map.
	Commands []string
	// Bike is the COPRI bike id of a BIKE_RENT device (its alias), else "".
	Bike string
	// Faults are the active faults, in a fixed order.
	Faults []FaultKind
}

// CanSync reports whether fleetd may sync the device: sync-device offered
// and not asleep out of reach.
func (d DeviceInfo) CanSync() bool {
	return slices.Contains(d.Commands, cmdSyncDevice) &&
		!(d.SleepState == string(sleepDeep) && d.PowerSaveStrategy == string(powerLocalWakeup))
}

// RentalInfo describes an open COPRI rental, for tests.
type RentalInfo struct {
	BookingID string
	Bike      string
	Station   string
	// State and LockState are COPRI's strings, e.g. "occupied", "locked".
	State     string
	LockState string
	StartTime time.Time
}

// Locations lists the fleet's locations in generation order.
func (s *Sim) Locations() []LocationInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]LocationInfo, 0, len(s.fleet.locations))
	for _, l := range s.fleet.locations {
		out = append(out, LocationInfo{ID: l.id, Name: l.name, Type: string(l.typ), Devices: len(l.devices)})
	}
	return out
}

// Devices lists a location's devices in order; nil for an unknown id.
func (s *Sim) Devices(locationID string) []DeviceInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l, ok := s.locByID[locationID]
	if !ok {
		return nil
	}
	out := make([]DeviceInfo, 0, len(l.devices))
	for _, d := range l.devices {
		out = append(out, d.info())
	}
	return out
}

// Device describes one device by id.
func (s *Sim) Device(deviceID string) (DeviceInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, ok := s.devByID[deviceID]
	if !ok {
		return DeviceInfo{}, false
	}
	return d.info(), true
}

func (d *device) info() DeviceInfo {
	di := DeviceInfo{
		ID:                d.id,
		Alias:             d.alias,
		Code:              d.code,
		HardwareID:        d.hardwareID,
		Type:              string(d.typ),
		LocationID:        d.loc.id,
		PowerSaveStrategy: string(d.power),
		SleepState:        string(d.sleep),
		Tags:              slices.Clone(d.tags),
		Commands:          slices.Clone(d.commands),
		Faults:            d.faults.kinds(),
	}
	if d.bike != nil {
		di.Bike = d.bike.id
	}
	return di
}

// Rentals lists the open COPRI rentals by booking id.
func (s *Sim) Rentals() []RentalInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]RentalInfo, 0, len(s.fleet.rentals))
	for _, r := range s.fleet.rentals {
		out = append(out, RentalInfo{
			BookingID: r.bookingID, Bike: r.bike.id, Station: r.bike.station,
			State: string(r.state), LockState: string(r.lock), StartTime: r.startTime,
		})
	}
	slices.SortFunc(out, func(a, b RentalInfo) int { return cmpString(a.BookingID, b.BookingID) })
	return out
}

func cmpString(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// touch records that d's rendering changed: its location's caches and the
// location list are rebuilt on their next request. Callers hold mu.
func (s *Sim) touch(d *device, now time.Time) {
	d.heartbeatAt = now
	d.loc.cache.Store(nil)
	d.loc.counts.Store(nil)
	s.locList.Store(nil)
}
