package health

import (
	"cmp"
	"slices"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/record"
)

// Tracker remembers fault conditions across observations: when each episode
// was first seen, how many consecutive observations saw it, and whether its
// grace has elapsed.
//
// A Tracker is not safe for concurrent use: one goroutine (the scraper) owns
// it, and other components get copies through Faults and RentalFaults.
type Tracker struct {
	p Params
	// gen numbers observations, so one pass over a location's (or an
	// operator's) entries finds those the observation did not touch.
	gen uint64
	// faults holds the device faults derived from location observations,
	// across all locations; locs[id].faults indexes the same entries.
	faults map[devKey]*devEntry
	locs   map[string]*locState
	ops    map[string]*opState
	// buf is reused by ObserveLocation for every device's conditions.
	buf []Condition
}

type devKey struct {
	id   string
	kind FaultKind
}

// devEntry is one fault episode of one device.
type devEntry struct {
	cond      Condition
	firstSeen time.Time
	lastSeen  time.Time // the observation that last saw it: grace is judged here
	walks     int
	gen       uint64
	loc       string
	alias     string
	code      string
	typ       bikeep.DeviceType
	dead      bool
	operator  string // rental_lock_mismatch only
	bookingID string // rental_lock_mismatch only
}

func (e *devEntry) active() bool { return e.cond.ActiveAt(e.firstSeen, e.lastSeen) }

func (e *devEntry) fault(deviceID string) Fault {
	return Fault{
		Kind:        e.cond.Kind,
		DeviceID:    deviceID,
		Alias:       e.alias,
		Code:        e.code,
		LocationID:  e.loc,
		DeviceType:  e.typ,
		Recoverable: e.cond.Kind.RecoverableKind() && !e.dead,
		Since:       since(e.cond.Onset, e.firstSeen),
		FirstSeen:   e.firstSeen,
		Walks:       e.walks,
		Detail:      e.cond.Detail,
		Operator:    e.operator,
		BookingID:   e.bookingID,
	}
}

type locState struct {
	seen time.Time
	// observed and carried are the location's records of its last
	// observation, for rental matching. Records are immutable and these are
	// the caller's slices (shared with the snapshot): keeping them costs no
	// copy of the fleet.
	observed, carried []record.Device
	faults            map[devKey]*devEntry
}

// NewTracker returns an empty tracker using p.
func NewTracker(p Params) *Tracker {
	return &Tracker{
		p:      p,
		faults: make(map[devKey]*devEntry),
		locs:   make(map[string]*locState),
		ops:    make(map[string]*opState),
	}
}

// SetParams replaces the parameters (config reload). They apply from the
// next observation on; episodes in progress keep their FirstSeen.
func (t *Tracker) SetParams(p Params) { t.p = p }

// ObserveLocation records one successful walk of a location at now. The
// location's conditions are replaced: conditions seen again continue their
// episode (Walks+1), new ones start an episode at now, and faults of this
// location that the walk no longer shows are cleared. A device that shows
// up here after being observed in another location carries its episodes
// along.
//
// The tracker keeps the records it is given (ObserveRecords and
// ObservePartialRecords keep the caller's slices) for rental matching:
// records are immutable, and callers must not modify them afterwards.
//
// The list must be complete: a device of the location missing from it is
// taken as gone. For a list some of whose entries could not be read, use
// ObservePartialLocation.
func (t *Tracker) ObserveLocation(now time.Time, locationID string, devices []bikeep.Device) {
	t.observe(now, locationID, bikeep.Records(devices...), nil)
}

// ObserveRecords is ObserveLocation for the compact records a walk keeps.
func (t *Tracker) ObserveRecords(now time.Time, locationID string, devices []record.Device) {
	t.observe(now, locationID, devices, nil)
}

// ObservePartialLocation records a walk of a location whose list could be
// read only in part: some entries failed to decode, so a device missing from
// observed may be one of them. Absence is then no evidence, and carried are
// the devices the caller still holds for the location with their last known
// records. observed is recorded as by ObserveLocation; every episode of a
// carried device continues untouched — same FirstSeen, same Walks, grace
// judged at the observation that last saw it — and carried devices remain
// matchable by rentals with their last known state. Faults of devices in
// neither list are cleared. A device must not be in both lists.
//
// Deciding how long a device may be carried (remediation.forget_after) is
// the caller's: it stops passing the device.
func (t *Tracker) ObservePartialLocation(now time.Time, locationID string, observed, carried []bikeep.Device) {
	t.observe(now, locationID, bikeep.Records(observed...), bikeep.Records(carried...))
}

// ObservePartialRecords is ObservePartialLocation for the compact records a
// walk keeps.
func (t *Tracker) ObservePartialRecords(now time.Time, locationID string, observed, carried []record.Device) {
	t.observe(now, locationID, observed, carried)
}

func (t *Tracker) observe(now time.Time, locationID string, devices, carried []record.Device) {
	ls := t.locs[locationID]
	if ls == nil {
		ls = &locState{faults: make(map[devKey]*devEntry)}
		t.locs[locationID] = ls
	}
	t.gen++
	gen := t.gen
	ls.seen = now
	ls.observed, ls.carried = devices, carried
	for i := range devices {
		d := &devices[i]
		conds := appendConditions(t.buf[:0], d, now, t.p)
		t.buf = conds[:0]
		for _, c := range conds {
			k := devKey{d.ID, c.Kind}
			e := t.faults[k]
			switch {
			case e == nil:
				e = &devEntry{firstSeen: now}
				t.faults[k] = e
			case e.gen == gen:
				continue // the same device twice in one listing: count it once
			case e.loc != locationID:
				// The device moved: the episode continues here.
				if old := t.locs[e.loc]; old != nil {
					delete(old.faults, k)
				}
			}
			e.cond = c
			e.walks++
			e.gen = gen
			e.lastSeen = now
			e.loc = locationID
			e.alias, e.code, e.typ, e.dead = d.Alias, d.Code, bikeep.DeviceType(d.TypeName()), isDead(d)
			ls.faults[k] = e
		}
	}
	if len(carried) > 0 {
		keep := make(map[string]bool, len(carried))
		for i := range carried {
			keep[carried[i].ID] = true
		}
		for k, e := range ls.faults {
			if e.gen != gen && keep[k.id] {
				e.gen = gen // not seen, not cleared: the episode simply goes on
			}
		}
	}
	for k, e := range ls.faults {
		if e.gen != gen {
			delete(ls.faults, k)
			delete(t.faults, k)
		}
	}
}

// ForgetLocation drops a location whose data went stale: its devices (for
// rental matching) and all faults of its devices, including
// rental_lock_mismatch.
func (t *Tracker) ForgetLocation(locationID string) {
	ls := t.locs[locationID]
	if ls == nil {
		return
	}
	for k := range ls.faults {
		delete(t.faults, k)
	}
	delete(t.locs, locationID)
	for _, op := range t.ops {
		for id, e := range op.devFaults {
			if e.loc == locationID {
				delete(op.devFaults, id)
			}
		}
	}
}

// Faults returns the active device faults — those whose grace had elapsed at
// the observation that last saw them — sorted by LocationID, DeviceID, Kind.
// The slice is fresh; the caller owns it.
//
// Should two operators report rental_lock_mismatch for the same device, the
// older episode is returned, so (DeviceID, Kind) is unique in the result.
func (t *Tracker) Faults() []Fault {
	n := len(t.faults)
	for _, op := range t.ops {
		n += len(op.devFaults)
	}
	out := make([]Fault, 0, n)
	for k, e := range t.faults {
		if e.active() {
			out = append(out, e.fault(k.id))
		}
	}
	var rental map[string]int // device id → index in out
	for _, op := range t.ops {
		for id, e := range op.devFaults {
			if !e.active() {
				continue
			}
			f := e.fault(id)
			if i, dup := rental[id]; dup {
				if older(f, out[i]) {
					out[i] = f
				}
				continue
			}
			if rental == nil {
				rental = make(map[string]int)
			}
			rental[id] = len(out)
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b Fault) int {
		return cmp.Or(
			cmp.Compare(a.LocationID, b.LocationID),
			cmp.Compare(a.DeviceID, b.DeviceID),
			cmp.Compare(a.Kind, b.Kind),
		)
	})
	return out
}

// older decides between two episodes of the same fault deterministically.
func older(a, b Fault) bool {
	if !a.FirstSeen.Equal(b.FirstSeen) {
		return a.FirstSeen.Before(b.FirstSeen)
	}
	return a.Operator < b.Operator
}
