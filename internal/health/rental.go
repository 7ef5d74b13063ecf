package health

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/clients/copri"
	"github.com/fleetd/fleetd/internal/record"
)

// opState is what the tracker remembers of one COPRI operator.
type opState struct {
	rentals map[rentalKey]*rentalEntry
	// devFaults holds rental_lock_mismatch episodes by device id: they are
	// device faults, but their life follows this operator's observations.
	devFaults map[string]*devEntry
}

// rentalKey identifies a rental fault: id is the booking id for
// locking_stuck/overdue and the bike for lock_mismatch (the kinds are
// disjoint, so the two never collide).
type rentalKey struct {
	id   string
	kind RentalFaultKind
}

type rentalEntry struct {
	f     RentalFault // Since, FirstSeen, Walks filled in by RentalFaults
	onset time.Time
	grace time.Duration
	gen   uint64
	last  time.Time
}

func (e *rentalEntry) active() bool { return graceElapsed(e.onset, e.grace, e.f.FirstSeen, e.last) }

// ObserveOperator records one walk of a COPRI operator at now: its open
// rentals (user_bikes_occupied) and, when available, its whole fleet
// (bikes_all; nil when the account cannot see it). It replaces the
// operator's rental faults and its rental_lock_mismatch device faults.
//
// Rentals are matched to Bikeep devices observed by ObserveLocation using m.
// A bike that matches more than one distinct device is ambiguous and left
// alone: sending sync-device to the wrong lock is worse than not sending it.
func (t *Tracker) ObserveOperator(now time.Time, operator string, m Match, rentals []copri.Rental, bikes []copri.Bike) {
	op := t.ops[operator]
	if op == nil {
		op = &opState{rentals: make(map[rentalKey]*rentalEntry), devFaults: make(map[string]*devEntry)}
		t.ops[operator] = op
	}
	t.gen++
	gen := t.gen
	p := t.p

	// Booking order makes the outcome independent of the caller's order
	// when two rentals point at the same device.
	order := make([]int, 0, len(rentals))
	for i := range rentals {
		if open(rentals[i].State) {
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(rentals[a].BookingID, rentals[b].BookingID) })

	var need map[string]*matchResult
	for _, i := range order {
		r := &rentals[i]
		switch r.LockState {
		case copri.LockLocking, copri.LockUnlocking:
			op.observe(now, gen, rentalKey{r.BookingID, LockingStuck}, RentalFault{
				Kind: LockingStuck, Operator: operator, BookingID: r.BookingID, Bike: r.Bike,
				Station: r.Station, Detail: `lock_state="` + string(r.LockState) + `"`,
			}, time.Time{}, p.TransitionGrace)
		case copri.LockLocked, copri.LockUnlocked:
			if r.Bike != "" {
				if need == nil {
					need = make(map[string]*matchResult)
				}
				need[r.Bike] = &matchResult{}
			}
		}
		if p.RentalMaxDuration > 0 && !r.StartTime.IsZero() && now.Sub(r.StartTime) > p.RentalMaxDuration {
			op.observe(now, gen, rentalKey{r.BookingID, Overdue}, RentalFault{
				Kind: Overdue, Operator: operator, BookingID: r.BookingID, Bike: r.Bike,
				Station: r.Station, Detail: "open since " + r.StartTime.UTC().Format(time.RFC3339),
			}, r.StartTime.Add(p.RentalMaxDuration), 0)
		}
	}

	for i := range bikes {
		b := &bikes[i]
		if b.LockState != copri.LockUnlocked {
			continue
		}
		var why string
		switch {
		case b.State == copri.StateAvailable:
			why = `state="available" lock_state="unlocked"`
		case b.State == copri.StateDefect:
			why = `state="defect" lock_state="unlocked"`
		case b.ServiceState == copri.ServiceDefect:
			why = `service_state="1" lock_state="unlocked"`
		default:
			continue
		}
		op.observe(now, gen, rentalKey{b.Bike, RentalLockMismatchKind}, RentalFault{
			Kind: RentalLockMismatchKind, Operator: operator, Bike: b.Bike, Station: b.Station, Detail: why,
		}, time.Time{}, p.LockMismatchGrace)
	}

	if need != nil {
		t.match(m, need)
		for _, i := range order {
			r := &rentals[i]
			mr := need[r.Bike]
			if mr == nil || !mr.found || mr.ambiguous {
				continue
			}
			dev := mr.rec
			if dev.LockState != record.LockLocked && dev.LockState != record.LockUnlocked {
				continue
			}
			if (r.LockState == copri.LockLocked) == (dev.LockState == record.LockLocked) {
				continue
			}
			e := op.devFaults[dev.ID]
			switch {
			case e == nil:
				e = &devEntry{firstSeen: now}
				op.devFaults[dev.ID] = e
			case e.gen == gen:
				continue // an earlier booking already claimed this device
			}
			e.cond = Condition{
				Kind:   RentalLockMismatch,
				Grace:  p.LockMismatchGrace,
				Detail: `rental lock_state="` + string(r.LockState) + `" device lock_state="` + dev.LockState.String() + `"`,
			}
			e.walks++
			e.gen = gen
			e.lastSeen = now
			e.loc, e.alias, e.code, e.typ, e.dead = mr.loc, dev.Alias, dev.Code, bikeep.DeviceType(dev.TypeName()), isDead(dev)
			e.operator, e.bookingID = operator, r.BookingID
		}
	}

	for k, e := range op.rentals {
		if e.gen != gen {
			delete(op.rentals, k)
		}
	}
	for id, e := range op.devFaults {
		if e.gen != gen {
			delete(op.devFaults, id)
		}
	}
}

// open reports whether a rental is still running: user_bikes_occupied should
// only list open ones, but an ended rental must never be judged.
func open(s copri.BookingState) bool {
	return s != copri.StateCanceled && s != copri.StateAvailable
}

func (op *opState) observe(now time.Time, gen uint64, k rentalKey, f RentalFault, onset time.Time, grace time.Duration) {
	e := op.rentals[k]
	switch {
	case e == nil:
		e = &rentalEntry{}
		f.FirstSeen = now
		op.rentals[k] = e
	case e.gen == gen:
		return // duplicate booking or bike in one response
	default:
		f.FirstSeen = e.f.FirstSeen
		f.Walks = e.f.Walks
	}
	f.Walks++
	e.f, e.onset, e.grace, e.gen, e.last = f, onset, grace, gen, now
}

// ForgetOperator drops everything known about an operator (its walks went
// stale or it left the config).
func (t *Tracker) ForgetOperator(operator string) { delete(t.ops, operator) }

// RentalFaults returns the active rental faults, sorted by Operator, then
// BookingID (or Bike for lock_mismatch, which has no booking), then Kind.
// The slice is fresh; the caller owns it.
func (t *Tracker) RentalFaults() []RentalFault {
	var out []RentalFault
	for _, op := range t.ops {
		for _, e := range op.rentals {
			if e.active() {
				f := e.f
				f.Since = since(e.onset, f.FirstSeen)
				out = append(out, f)
			}
		}
	}
	slices.SortFunc(out, func(a, b RentalFault) int {
		return cmp.Or(
			cmp.Compare(a.Operator, b.Operator),
			cmp.Compare(rentalID(a), rentalID(b)),
			cmp.Compare(a.Kind, b.Kind),
		)
	})
	return out
}

func rentalID(f RentalFault) string {
	if f.BookingID != "" {
		return f.BookingID
	}
	return f.Bike
}

// matchResult is the device a COPRI bike maps to.
type matchResult struct {
	rec       *record.Device
	loc       string
	seen      time.Time
	found     bool
	ambiguous bool // more than one distinct device carries this bike's id
}

// match looks up every bike in need among the devices of all observed
// locations. One pass over the fleet with lookups in the small need map
// avoids building a fleet-wide index on every operator walk.
func (t *Tracker) match(m Match, need map[string]*matchResult) {
	for locID, ls := range t.locs {
		for _, devs := range [2][]record.Device{ls.observed, ls.carried} {
			for i := range devs {
				rec := &devs[i]
				switch m.Field {
				case MatchAlias:
					consider(need, rec.Alias, rec, locID, ls.seen)
				case MatchCode:
					consider(need, rec.Code, rec, locID, ls.seen)
				case MatchHardwareID:
					consider(need, rec.HardwareID, rec, locID, ls.seen)
				case MatchTag:
					for _, tag := range rec.Tags {
						if bike, ok := strings.CutPrefix(tag, m.TagPrefix); ok {
							consider(need, bike, rec, locID, ls.seen)
						}
					}
				}
			}
		}
	}
}

func consider(need map[string]*matchResult, key string, rec *record.Device, loc string, seen time.Time) {
	if key == "" {
		return
	}
	mr := need[key]
	if mr == nil {
		return
	}
	switch {
	case !mr.found:
		mr.rec, mr.loc, mr.seen, mr.found = rec, loc, seen, true
	case mr.rec.ID != rec.ID:
		mr.ambiguous = true
	case seen.After(mr.seen) || (seen.Equal(mr.seen) && loc < mr.loc):
		// The same device listed in two locations (it moved and the old
		// location has not been walked since): the newer listing wins.
		mr.rec, mr.loc, mr.seen = rec, loc, seen
	}
}
