package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// location is one simulated Bikeep location.
type location struct {
	idx  int
	id   string
	name string
	typ  locationType
	city city
	lat  float64
	lon  float64

	devices []*device

	// cache holds the serialized device list; nil when a device here changed.
	cache atomic.Pointer[cachedBody]
	// counts is the devices summary of the location list; nil when stale.
	counts atomic.Pointer[wireDeviceCounts]
	// errStatus > 0 makes the device list answer that status.
	errStatus atomic.Int32
}

// cachedBody is a serialized response for one base URL.
type cachedBody struct {
	base string
	body []byte
}

// device is one simulated device: its static identity, its healthy ("base")
// state, and the faults rendered over that base.
type device struct {
	idx    int // index in Sim.devices
	locIdx int // index within its location
	loc    *location

	id, alias, code, hardwareID string
	typ                         deviceType
	power                       powerSave
	sleep                       sleepState
	tags                        []string
	comment                     string
	hasCamera, hasOTP           bool
	hasAccessLists, hasSub      bool
	hasAllowlist                bool
	priceListID                 string
	noHealthData                bool // heartbeat_v2 null while healthy
	commands                    []string
	settingsCreated             time.Time
	settingsUpdated             time.Time

	// Base (healthy) state, changed by commands.
	state          stateValue
	stateChangedAt time.Time
	stateTimeoutAt time.Time
	lock           lockState
	heartbeatAt    time.Time
	userID         string // "" → user null
	userKey        string

	faults     faultSet
	faultSince map[FaultKind]time.Time
	faultyPos  int // position in Sim.faulty, -1 when healthy

	bike        *bike // BIKE_RENT only
	lastLockCmd time.Time
	syncs       int  // sync-device commands received, for deterministic cures
	stubborn    bool // sync-device never cures it (SetStubborn)
}

// supports reports whether the device's commands map offers name.
func (d *device) supports(name string) bool { return slices.Contains(d.commands, name) }

// isDoor reports whether the device is a bike-house door: available to users
// when LOCKED (its idle state), opened by an unlock that locks itself again.
// Its lock_state agrees with its state.value like any other lock's.
func (d *device) isDoor() bool { return d.typ == typeBikeHouseDoor }

// hasLock reports whether the device has a lock of its own.
func (d *device) hasLock() bool { return d.typ != typeGuard }

// bike is a COPRI bike, one per BIKE_RENT device.
type bike struct {
	id        string // the device's alias
	dev       *device
	station   string // the location's name
	state     bookingState
	lock      copriLock
	service   serviceState
	guid      string
	ilockitID string
	lat, lon  float64
	group     string
	descr     string
	rental    *rental
}

// rental is an open COPRI rental.
type rental struct {
	bookingID   string
	bike        *bike
	state       bookingState
	lock        copriLock
	requestTime time.Time
	startTime   time.Time
	endTime     time.Time // last update; COPRI's short timestamp shape
	tariff      tariff
	altShape    bool // rental_description instead of tariff_description
	kU, kSeed   string
	kA          string // "" → no K_a
	byFault     bool   // opened by a fault; closed again when it clears
	origStart   time.Time
}

type tariff struct {
	name, number                     string
	eurPerHour, maxPerDay, freeHours float64
}

// city seeds location names, aliases and coordinates.
type city struct {
	code, name string
	lat, lon   float64
	places     []string
}

func cities() []city {
	return []city{
		{"FR", "Freiburg", 47.9990, 7.8421, []string{"Hauptbahnhof", "Stühlinger", "Vauban", "Wiehre", "Herdern", "Rieselfeld", "Zähringen", "Littenweiler", "Messe", "Uniklinik", "Bertoldsbrunnen", "Europaplatz"}},
		{"TLN", "Tallinn", 59.4370, 24.7536, []string{"Balti jaam", "Kristiine", "Ülemiste", "Kalamaja", "Rotermanni", "Kadriorg", "Mustamäe", "Telliskivi", "Lasnamäe", "Pirita"}},
		{"HEL", "Helsinki", 60.1699, 24.9384, []string{"Kamppi", "Pasila", "Kallio", "Töölö", "Itäkeskus", "Hakaniemi", "Ruoholahti", "Kalasatama"}},
		{"KA", "Karlsruhe", 49.0069, 8.4037, []string{"Hauptbahnhof", "Durlach", "Marktplatz", "KIT Campus Süd", "Mühlburger Tor", "Europaplatz"}},
		{"LR", "Lahr", 48.3403, 7.8688, []string{"Bahnhof", "Rathausplatz", "Stadtpark", "Seepark"}},
		{"NYC", "New York", 40.7128, -74.0060, []string{"Grand Central", "Hudson Yards", "Union Square", "Brooklyn Navy Yard", "Penn Station"}},
	}
}

// locationKinds is the weighted mix of location types.
func locationKinds() []struct {
	typ    locationType
	weight int
	suffix string
} {
	return []struct {
		typ    locationType
		weight int
		suffix string
	}{
		{locBikeDocks, 32, "Bike Docks"},
		{locBikeLockers, 28, "Bike Lockers"},
		{locBikeHouse, 16, "Bike House"},
		{locScooterDocks, 8, "Scooter Docks"},
		{locScooterDocksV2, 5, "Scooter Hub"},
		{locBikeHouseDockless, 6, "Bike Room"},
		{locBikeHangar, 5, "Bike Hangar"},
	}
}

// deviceTypeFor is the type of the i-th of n devices at a location of type
// lt: index 0 is the site's gateway (or the bike-house door), the rest are
// parking spaces or rental vehicles.
func deviceTypeFor(lt locationType, i, n int) deviceType {
	var main deviceType
	switch lt {
	case locBikeLockers:
		main = typeLocker
	case locBikeHouse:
		main = typeBikeRent
	case locScooterDocks:
		main = typeScooterDock
	case locScooterDocksV2:
		main = typeDock
	case locBikeHouseDockless:
		main = typeDockSessionless
	case locBikeHangar:
		main = typeDoor
	default:
		main = typeBikeDock
	}
	switch lt {
	case locBikeHouse, locBikeHouseDockless:
		switch {
		case i == 0 && n >= 2:
			return typeBikeHouseDoor
		case i == 1 && n >= 4:
			return typeGuard
		}
	case locScooterDocksV2:
		if i == 0 && n >= 2 {
			return typeGuard
		}
		if i%3 == 0 {
			return typeScooterRent
		}
	default:
		if i == 0 && n >= 2 {
			return typeGuard
		}
	}
	return main
}

// commandsFor is the commands map of a device: which commands its type
// accepts. legacy devices (old firmware) cannot be synced.
func commandsFor(t deviceType, hasCamera, legacy bool) []string {
	var cmds []string
	switch t {
	case typeGuard:
		cmds = []string{cmdSyncDevice}
	case typeBikeHouseDoor:
		// Its only API command (NOTES.md): it cannot be synced.
		return []string{cmdUnlock}
	case typeBikeRent, typeScooterRent, typeDockSessionless:
		cmds = []string{cmdLock, cmdUnlock, cmdForceLock, cmdForceUnlock, cmdSyncDevice}
	default: // LOCKER, BIKE_DOCK, SCOOTER_DOCK, DOCK, DOOR
		cmds = []string{cmdLock, cmdUnlock, cmdBook, cmdCancelBooking,
			cmdForceLock, cmdForceUnlock, cmdForceCancelBooking, cmdSyncDevice}
	}
	if hasCamera {
		cmds = append(cmds, cmdTakePhoto)
	}
	if legacy {
		cmds = slices.DeleteFunc(cmds, func(c string) bool { return c == cmdSyncDevice })
	}
	slices.Sort(cmds)
	return cmds
}

// fleet is the generated world before it is wrapped in a Sim.
type fleet struct {
	locations []*location
	devices   []*device
	bikes     []*bike
	rentals   []*rental
	nextBook  int
}

// genUUID draws a version-4 UUID from r.
func genUUID(r *rand.Rand) string {
	a, b := r.Uint64(), r.Uint64()
	a = a&^(0xf<<12) | 0x4<<12 // version 4
	b = b&^(0x3<<62) | 0x2<<62 // RFC 4122 variant
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", a>>32, a>>16&0xffff, a&0xffff, b>>48, b&0xffffffffffff)
}

// derivedUUID is a version-4-shaped UUID computed from s, for ids that must
// not consume the seeded generator.
func derivedUUID(s string) string {
	var h uint64 = 0xcbf29ce484222325 // FNV-1a
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 0x100000001b3
	}
	a, b := splitmix(h), splitmix(h^0x5eed)
	a = a&^(0xf<<12) | 0x4<<12
	b = b&^(0x3<<62) | 0x2<<62
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", a>>32, a>>16&0xffff, a&0xffff, b>>48, b&0xffffffffffff)
}

// genHex draws n random bytes from r as lower-case hex.
func genHex(r *rand.Rand, n int) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 2*n)
	for i := range n {
		v := byte(r.Uint32())
		out[2*i], out[2*i+1] = digits[v>>4], digits[v&0xf]
	}
	return string(out)
}

// genKey draws n signed bytes in COPRI's key notation "[-26, 6, ...]".
func genKey(r *rand.Rand, n int) string {
	b := []byte{'['}
	for i := range n {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = fmt.Appendf(b, "%d", int8(r.Uint32()))
	}
	return string(append(b, ']'))
}

// generate builds the fleet for opts deterministically from opts.Seed; now
// anchors the timestamps.
func generate(opts Options, now time.Time) *fleet {
	r := rand.New(rand.NewPCG(uint64(opts.Seed), 0x5eed_f1ee7d))
	f := &fleet{nextBook: 155896}
	cs := cities()
	kinds := locationKinds()
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	usedNames := map[string]int{}
	// Devices of one kind share their (read-only) commands slice.
	cmdSets := map[string][]string{}
	for li := range opts.Locations {
		c := cs[r.IntN(len(cs))]
		w := r.IntN(total)
		k := kinds[0]
		for _, kk := range kinds {
			if w < kk.weight {
				k = kk
				break
			}
			w -= kk.weight
		}
		name := fmt.Sprintf("%s %s %s", c.name, c.places[r.IntN(len(c.places))], k.suffix)
		usedNames[name]++
		if n := usedNames[name]; n > 1 {
			name = fmt.Sprintf("%s %d", name, n)
		}
		loc := &location{
			idx:  li,
			id:   genUUID(r),
			name: name,
			typ:  k.typ,
			city: c,
			lat:  c.lat + (r.Float64()-0.5)*0.08,
			lon:  c.lon + (r.Float64()-0.5)*0.12,
		}
		f.locations = append(f.locations, loc)
		for di := range opts.DevicesPerLocation {
			d := genDevice(r, loc, di, opts.DevicesPerLocation, now)
			key := strings.Join(d.commands, ",")
			if shared, ok := cmdSets[key]; ok {
				d.commands = shared
			} else {
				cmdSets[key] = d.commands
			}
			d.idx = len(f.devices)
			loc.devices = append(loc.devices, d)
			f.devices = append(f.devices, d)
			if d.typ == typeBikeRent {
				f.bikes = append(f.bikes, genBike(r, d))
			}
		}
	}
	f.openInitialRentals(r, opts, now)
	return f
}

func genDevice(r *rand.Rand, loc *location, i, n int, now time.Time) *device {
	typ := deviceTypeFor(loc.typ, i, n)
	d := &device{
		locIdx:     i,
		loc:        loc,
		id:         genUUID(r),
		alias:      fmt.Sprintf("%s-%04d-%02d", loc.city.code, loc.idx+1, i+1),
		code:       fmt.Sprintf("%06d", r.IntN(1_000_000)),
		hardwareID: genUUID(r),
		typ:        typ,
		power:      powerNone,
		sleep:      sleepAwake,
		faultyPos:  -1,
	}
	d.hasOTP = r.IntN(3) == 0
	d.hasAccessLists = r.IntN(4) == 0
	d.hasSub = r.IntN(5) == 0
	d.hasAllowlist = r.IntN(6) == 0
	switch typ {
	case typeGuard:
		d.hasCamera = r.IntN(2) == 0
	case typeLocker:
		d.hasCamera = r.IntN(10) == 0
	}
	switch typ {
	case typeBikeRent, typeScooterRent:
		d.power = powerRemoteWakeup
		if r.IntN(8) == 0 {
			d.power = powerLocalWakeup
		}
	case typeGuard, typeBikeHouseDoor:
		// Mains-powered gateways and doors.
	default:
		if r.IntN(20) == 0 {
			d.power = powerLocalWakeup
		} else if r.IntN(10) == 0 {
			d.power = powerRemoteWakeup
		}
	}
	switch d.power {
	case powerLocalWakeup:
		if r.IntN(2) == 0 {
			d.sleep = sleepDeep
		}
	case powerRemoteWakeup:
		if r.IntN(3) == 0 {
			d.sleep = sleepLight
		}
	}
	if r.IntN(30) == 0 {
		d.tags = append(d.tags, "no-auto-remediation")
	}
	if r.IntN(4) == 0 {
		d.tags = append(d.tags, []string{"indoor", "outdoor", "solar", "pilot"}[r.IntN(4)])
	}
	if r.IntN(15) == 0 {
		d.comment = []string{"Lock replaced", "Door sensor recalibrated", "Sticker missing", "Moved from another site"}[r.IntN(4)]
	}
	legacy := typ != typeGuard && r.IntN(50) == 0
	d.commands = commandsFor(typ, d.hasCamera, legacy)
	if typ != typeGuard && typ != typeBikeHouseDoor {
		d.priceListID = genUUID(r)
	} else {
		// Derived, not drawn, so that the rest of the seeded fleet stays
		// as it was when these devices had no price list.
		d.priceListID = derivedUUID(d.id + "/price-list")
	}
	d.noHealthData = typ != typeBikeRent && r.IntN(200) == 0
	d.settingsCreated = now.Add(-time.Duration(200+r.IntN(900)) * 24 * time.Hour).Truncate(time.Second)
	d.settingsUpdated = d.settingsCreated.Add(time.Duration(r.IntN(150*24*3600)) * time.Second)
	d.heartbeatAt = now.Add(-time.Duration(r.IntN(300_000)) * time.Millisecond).Truncate(time.Millisecond)
	d.stateChangedAt = now.Add(-time.Duration(r.IntN(72*3600_000)) * time.Millisecond).Truncate(time.Millisecond)

	// A consistent healthy pair of state.value and lock_state.
	switch typ {
	case typeGuard:
		d.state, d.lock = stateUnlocked, "" // no lock: lock_state null
	case typeBikeHouseDoor:
		d.state, d.lock = stateLocked, lockLocked // idle, and so available
	case typeBikeRent:
		d.state, d.lock = stateLocked, lockLocked // parked
	default:
		if r.IntN(100) < 35 {
			d.state, d.lock = stateLocked, lockLocked // in use
			d.userID = genUUID(r)
			d.userKey = genHex(r, 16)
		} else {
			d.state, d.lock = stateUnlocked, lockUnlocked // free
		}
	}
	return d
}

func genBike(r *rand.Rand, d *device) *bike {
	b := &bike{
		id:        d.alias,
		dev:       d,
		station:   d.loc.name,
		state:     copriAvailable,
		lock:      copriLocked,
		service:   serviceOK,
		guid:      "00000000-0000-0000-0000-" + genHex(r, 6),
		ilockitID: fmt.Sprintf("ISHAREIT-%07d", 2200000+r.IntN(100000)),
		lat:       d.loc.lat + (r.Float64()-0.5)*0.001,
		lon:       d.loc.lon + (r.Float64()-0.5)*0.001,
		group:     fmt.Sprintf("%s3000%02d", d.loc.city.code, 1+r.IntN(3)),
		descr:     fmt.Sprintf("%s-bike (Ilockit)", d.loc.city.name),
	}
	switch n := r.IntN(40); {
	case n == 0:
		b.state, b.service = copriDefect, serviceDefect
	case n == 1:
		b.service = serviceTodo
	case n == 2:
		b.service = serviceCheck
	}
	d.bike = b
	return b
}

func (f *fleet) openInitialRentals(r *rand.Rand, opts Options, now time.Time) {
	var free []*bike
	for _, b := range f.bikes {
		if b.state == copriAvailable {
			free = append(free, b)
		}
	}
	if len(free) == 0 || opts.Rentals < 0 {
		return
	}
	n := opts.Rentals
	if n == 0 {
		n = max(3, (len(f.bikes)*2+50)/100)
	}
	n = min(n, len(free))
	for _, i := range r.Perm(len(free))[:n] {
		rt := f.openRental(r, free[i], now.Add(-time.Duration(20+r.IntN(300))*time.Minute))
		if r.IntN(4) == 0 {
			rt.lock = copriLocked // paused
		}
		syncBikeToRental(free[i])
	}
}

// openRental opens a rental on b that started at start.
func (f *fleet) openRental(r *rand.Rand, b *bike, start time.Time) *rental {
	tariffs := []tariff{
		{"Vauban Bonus", "5504", 2.00, 15.00, 1.00},
		{"Standard", "5501", 3.00, 20.00, 0.50},
		{"Student", "5512", 1.50, 10.00, 1.00},
	}
	rt := &rental{
		bookingID:   fmt.Sprintf("%d", f.nextBook),
		bike:        b,
		state:       copriOccupied,
		lock:        copriUnlocked,
		requestTime: start.Add(-time.Duration(30+r.IntN(900)) * time.Second).Add(time.Duration(r.IntN(1e6)) * time.Microsecond),
		startTime:   start.Add(time.Duration(r.IntN(1e6)) * time.Microsecond),
		tariff:      tariffs[r.IntN(len(tariffs))],
		altShape:    r.IntN(4) == 0,
		kU:          genKey(r, 24),
		kSeed:       genKey(r, 16),
	}
	rt.endTime = rt.startTime.Add(time.Duration(1+r.IntN(5)) * time.Second)
	rt.origStart = rt.startTime
	if r.IntN(3) == 0 {
		rt.kA = genKey(r, 16)
	}
	f.nextBook += 1 + r.IntN(5)
	b.rental = rt
	f.rentals = append(f.rentals, rt)
	return rt
}

// syncBikeToRental makes the bike's COPRI state and its device's healthy
// state agree with its rental (or with being parked when it has none).
func syncBikeToRental(b *bike) {
	d := b.dev
	if b.rental == nil {
		if b.state == copriOccupied {
			b.state = copriAvailable
		}
		b.lock = copriLocked
		d.state, d.lock = stateLocked, lockLocked
		return
	}
	b.state = copriOccupied
	b.lock = b.rental.lock
	if b.rental.lock == copriLocked {
		d.state, d.lock = stateLocked, lockLocked
	} else {
		d.state, d.lock = stateUnlocked, lockUnlocked
	}
}
