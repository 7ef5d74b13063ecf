package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// overdueAge is how long ago an overdue rental started.
const overdueAge = 30 * time.Hour

// applicable reports why fault k cannot be injected into d, or nil.
func applicable(d *device, k FaultKind) error {
	switch k {
	case FaultLockMismatch:
		if !d.hasLock() {
			return fmt.Errorf("sim: %s has no lock: %s does not apply", d.typ, k)
		}
	case FaultRentalLockMismatch, FaultOverdueRental:
		if d.bike == nil {
			return fmt.Errorf("sim: %s is not a rental bike: %s does not apply", d.typ, k)
		}
	}
	return nil
}

// addFault injects k into d. Callers hold mu.
func (s *Sim) addFault(d *device, k FaultKind, now time.Time) error {
	if err := applicable(d, k); err != nil {
		return err
	}
	if d.faults.has(k) {
		return nil
	}
	switch k {
	case FaultRentalLockMismatch, FaultOverdueRental:
		b := d.bike
		if b.rental == nil {
			r := s.fleet.openRental(s.evolveRng, b, now.Add(-time.Duration(10+s.evolveRng.IntN(60))*time.Minute))
			r.byFault = true
			syncBikeToRental(b)
		}
		if k == FaultOverdueRental {
			r := b.rental
			r.startTime = now.Add(-overdueAge)
			r.requestTime = r.startTime.Add(-4*time.Minute - 17*time.Second)
			r.endTime = r.startTime.Add(2 * time.Second)
		}
	}
	d.faults |= k.bit()
	if d.faultSince == nil {
		d.faultSince = make(map[FaultKind]time.Time, 1) // lazily: most devices never fail
	}
	d.faultSince[k] = now
	if d.faultyPos < 0 {
		d.faultyPos = len(s.faulty)
		s.faulty = append(s.faulty, d)
	}
	s.touch(d, now)
	s.log.Debug("sim: fault started", "device_id", d.id, "alias", d.alias, "fault", k)
	return nil
}

// clearFaults removes the faults in set from d. Callers hold mu.
func (s *Sim) clearFaults(d *device, set faultSet, now time.Time, why string) {
	set &= d.faults
	if set == 0 {
		return
	}
	for _, k := range set.kinds() {
		delete(d.faultSince, k)
	}
	d.faults &^= set
	if b := d.bike; b != nil && b.rental != nil {
		r := b.rental
		if set.has(FaultOverdueRental) {
			r.startTime = r.origStart
			r.endTime = r.startTime.Add(2 * time.Second)
		}
		if r.byFault && !d.faults.has(FaultOverdueRental) && !d.faults.has(FaultRentalLockMismatch) {
			s.closeRental(r)
		}
	}
	if d.faults == 0 && d.faultyPos >= 0 {
		last := s.faulty[len(s.faulty)-1]
		s.faulty[d.faultyPos] = last
		last.faultyPos = d.faultyPos
		s.faulty = s.faulty[:len(s.faulty)-1]
		d.faultyPos = -1
	}
	s.touch(d, now)
	s.log.Debug("sim: faults "+why, "device_id", d.id, "alias", d.alias, "faults", set.kinds())
}

// closeRental ends r: the bike is available and locked again.
func (s *Sim) closeRental(r *rental) {
	r.bike.rental = nil
	s.fleet.rentals = slices.DeleteFunc(s.fleet.rentals, func(x *rental) bool { return x == r })
	syncBikeToRental(r.bike)
}

// evolveWeights is the mix of spontaneous faults.
func evolveWeights() []struct {
	kind   FaultKind
	weight int
} {
	return []struct {
		kind   FaultKind
		weight int
	}{
		{FaultUnhealthy, 24}, {FaultDead, 10}, {FaultLongDead, 2}, {FaultHardwareError, 12},
		{FaultNotResponding, 12}, {FaultStuckTransition, 10}, {FaultLockMismatch, 15},
		{FaultRentalLockMismatch, 5}, {FaultOverdueRental, 2}, {FaultUnknownState, 1}, {FaultDisabled, 3},
	}
}

// evolve starts and cures faults at random for the time since the last
// call. The number of changes is drawn first (Poisson), then only that many
// devices are touched, so a Step over 100,000 devices costs O(changes).
func (s *Sim) evolve(now time.Time) {
	if s.lastEvolve.IsZero() || now.Before(s.lastEvolve) {
		s.lastEvolve = now
		return
	}
	minutes := now.Sub(s.lastEvolve).Minutes()
	s.lastEvolve = now
	if minutes <= 0 {
		return
	}
	r := s.evolveRng
	if s.opts.CureRate > 0 && len(s.faulty) > 0 {
		p := 1 - math.Pow(1-s.opts.CureRate, minutes)
		n := min(poisson(r, p*float64(len(s.faulty))), len(s.faulty))
		for range n {
			d := s.faulty[r.IntN(len(s.faulty))]
			s.clearFaults(d, d.faults, now, "cured by themselves")
		}
	}
	if s.opts.FaultRate > 0 && len(s.fleet.devices) > 0 {
		p := 1 - math.Pow(1-s.opts.FaultRate, minutes)
		n := poisson(r, p*float64(len(s.fleet.devices)))
		weights := evolveWeights()
		total := 0
		for _, w := range weights {
			total += w.weight
		}
		for range n {
			d := s.fleet.devices[r.IntN(len(s.fleet.devices))]
			x := r.IntN(total)
			k := weights[0].kind
			for _, w := range weights {
				if x < w.weight {
					k = w.kind
					break
				}
				x -= w.weight
			}
			if applicable(d, k) != nil {
				k = FaultUnhealthy // every device can be unhealthy
			}
			_ = s.addFault(d, k, now)
		}
	}
}

// poisson draws from a Poisson distribution with mean lambda.
func poisson(r *rand.Rand, lambda float64) int {
	if lambda <= 0 {
		return 0
	}
	if lambda > 30 {
		return max(0, int(math.Round(lambda+math.Sqrt(lambda)*r.NormFloat64())))
	}
	limit, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= r.Float64()
		if p <= limit {
			return k
		}
		k++
	}
}

// cureRoll is a uniform number in [0,1) that depends only on the seed, the
// device and how many syncs it has received, so cures are reproducible
// whatever the order of other events.
func (s *Sim) cureRoll(d *device) float64 {
	h := splitmix(uint64(s.opts.Seed) ^ splitmix(uint64(d.idx)<<20^uint64(d.syncs)))
	return float64(h>>11) / (1 << 53)
}

// splitmix is the SplitMix64 finalizer: a cheap, well-mixed hash.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// rentalLockIs reports whether a rental's lock_state is locked.
func rentalLocked(r *rental) bool { return r.lock == copriLocked }

// deviceReachable reports whether a command can reach d at all.
func deviceReachable(d *device, name string) bool {
	if d.faults.has(FaultDead) || d.faults.has(FaultLongDead) {
		return false
	}
	if d.sleep == sleepDeep && d.power == powerLocalWakeup {
		return false
	}
	if d.faults.has(FaultNotResponding) && name != cmdSyncDevice {
		return false
	}
	return true
}
