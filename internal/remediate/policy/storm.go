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

// Over reports whether faulty of devices exceeds the storm limit. A scope
// with fewer than min_devices devices never storms.
func Over(faulty, devices int, c config.Storm) bool {
	return devices >= c.MinDevices && devices > 0 && float64(faulty)/float64(devices) > c.MaxFaultyRatio
}

// Step advances the storm by one measurement at now: a storm starts the
// moment the ratio is over, and ends once it has held at or below the
// limit for cooldown (at once when cooldown is zero or less).
func (s Storm) Step(now time.Time, over bool, cooldown time.Duration) (Storm, StormEvent) {
	switch {
	case !s.Active() && over:
		return Storm{Since: now}, StormStarted
	case !s.Active():
		return s, StormUnchanged
	case over:
		s.BelowSince = time.Time{}
		return s, StormUnchanged
	case s.BelowSince.IsZero():
		s.BelowSince = now
		if cooldown <= 0 {
			return Storm{}, StormEnded
		}
		return s, StormUnchanged
	case now.Sub(s.BelowSince) >= cooldown:
		return Storm{}, StormEnded
	}
	return s, StormUnchanged
}
