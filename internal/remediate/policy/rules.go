package policy

import (
	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/health"
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
		Remediation: p,
		Limits: Limits{Cooldown: p.Cooldown, MaxAttempts: p.MaxAttempts, MaxInFlight: p.MaxInFlight,
			PowerCycleFromAttempt: p.PowerCycleFromAttempt},
		exclLocations: set(p.Exclude.Locations),
		exclTypes:     set(p.Exclude.DeviceTypes),
		exclTags:      set(p.Exclude.Tags),
	}
}

// Excluded reports whether remediation.exclude covers the device: by
// location, by type (from the device, or from the fault when the device is
// not in the snapshot) or by one of its tags.
func (r *Rules) Excluded(locationID string, dev *bikeep.Device, f *health.Fault) bool {
	if r.exclLocations[locationID] {
		return true
	}
	switch {
	case dev != nil:
		if r.exclTypes[string(dev.Type)] {
			return true
		}
		for _, t := range dev.Tags {
			if r.exclTags[t] {
				return true
			}
		}
	case f != nil:
		return r.exclTypes[string(f.DeviceType)]
	}
	return false
}
