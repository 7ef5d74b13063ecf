package policy

import (
	"time"

	"github.com/fleetd/fleetd/internal/config"
)

// FleetScope is the storm scope of the fleet-wide storm; a location storm's
// scope is its location id.
const FleetScope = "fleet"

// Storm is the storm state of one scope, as a value. The zero Storm is no
// storm.
type Storm struct {
	// Since is when the storm started; zero when there is none.
	Since time.Time
	// BelowSince is when the ratio fell back to the limit; zero while over.
	BelowSince time.Time
	// Last is the latest measurement of the scope.
	Last Measure
}

// Measure is one measurement of a scope: its devices, and how many of them
// have a fault.
type Measure struct {
	Faulty, Devices int
}

// Ratio is the faulty share of the devices; 0 for none.
func (m Measure) Ratio() float64 {
	if m.Devices == 0 {
		return 0
	}
	return float64(m.Faulty) / float64(m.Devices)
}

// Over reports whether the measurement exceeds the storm limit. A scope
// with fewer than min_devices devices never storms.
func (m Measure) Over(c config.Storm) bool {
	return m.Devices >= c.MinDevices && m.Devices > 0 && m.Ratio() > c.MaxFaultyRatio
}

// Active reports whether a storm holds back commands in the scope.
func (s Storm) Active() bool { return !s.Since.IsZero() }

// StormEvent is the transition a Step made.
type StormEvent int

const (
	StormUnchanged StormEvent = iota
	StormStarted
	StormEnded
)

// Step advances the storm by one measurement at now: a storm starts the
// moment the ratio is over the limit, and ends once it has held at or
// below it for c.Cooldown (at once when that is zero or less).
func (s Storm) Step(now time.Time, m Measure, c config.Storm) (Storm, StormEvent) {
	s.Last = m
	over, cooldown := m.Over(c), c.Cooldown
	switch {
	case !s.Active() && over:
		return Storm{Since: now, Last: m}, StormStarted
	case !s.Active():
		return s, StormUnchanged
	case over:
		s.BelowSince = time.Time{}
		return s, StormUnchanged
	case s.BelowSince.IsZero():
		s.BelowSince = now
		if cooldown <= 0 {
			return Storm{Last: m}, StormEnded
		}
		return s, StormUnchanged
	case now.Sub(s.BelowSince) >= cooldown:
		return Storm{Last: m}, StormEnded
	}
	return s, StormUnchanged
}
