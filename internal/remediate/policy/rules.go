package policy

import (
	"time"

	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/record"
)

// Rules is a remediation: section compiled for the gates: exclusions as
// sets, limits gathered. Immutable once built.
type Rules struct {
	config.Remediation
	Limits Limits

	exclLocations, exclTypes, exclTags map[string]bool
}

// Compile builds the Rules of a remediation: section.
func Compile(p config.Remediation) *Rules {
	set := func(vs []string) map[string]bool {
		m := make(map[string]bool, len(vs))
		for _, v := range vs {
			m[v] = true
		}
		return m
	}
	return &Rules{
		Remediation:   p,
		Limits:        LimitsOf(p),
		exclLocations: set(p.Exclude.Locations),
		exclTypes:     set(p.Exclude.DeviceTypes),
		exclTags:      set(p.Exclude.Tags),
	}
}

// Excluded reports whether remediation.exclude covers the device.
func (r *Rules) Excluded(locationID string, dev *record.Device, f *health.Fault) bool {
	return r.Exclusion(locationID, dev, f) != ""
}

// Exclusion names the remediation.exclude rule that covers the device —
// "location", "device type" (from the device, or from the fault when the
// device is not in the snapshot) or "tag <tag>" — or returns "" when none
// does, so a page can say why without matching the rules again.
func (r *Rules) Exclusion(locationID string, dev *record.Device, f *health.Fault) string {
	if r.exclLocations[locationID] {
		return "location"
	}
	switch {
	case dev != nil:
		if r.exclTypes[dev.TypeName()] {
			return "device type"
		}
		for _, t := range dev.Tags {
			if r.exclTags[t] {
				return "tag " + t
			}
		}
	case f != nil && r.exclTypes[string(f.DeviceType)]:
		return "device type"
	}
	return ""
}

// LimitsOf gathers the limits of a remediation: section.
func LimitsOf(p config.Remediation) Limits {
	return Limits{Cooldown: p.Cooldown, MaxAttempts: p.MaxAttempts, MaxInFlight: p.MaxInFlight,
		PowerCycleFromAttempt: p.PowerCycleFromAttempt}
}

// BlackoutAt reports whether a blackout window is open at now. It parses
// each window's cron spec, so a pass evaluates it once, not per fault.
func (r *Rules) BlackoutAt(now time.Time) bool {
	for _, b := range r.Blackout {
		if b.Active(now) {
			return true
		}
	}
	return false
}
