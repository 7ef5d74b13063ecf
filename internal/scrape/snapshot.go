package scrape

import (
	"slices"
	"strings"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/clients/copri"
	"github.com/fleetd/fleetd/internal/health"
)

// SourceBikeep is the source name of the Bikeep device walk. COPRI operators
// are named "copri/<operator>".
const SourceBikeep = "bikeep"

// CopriSource returns the source name of a COPRI operator.
func CopriSource(operator string) string { return "copri/" + operator }

// Snapshot is the state of the fleet after a walk. It is immutable once
// published: readers (the Collector, the status page, remediation) may hold it
// as long as they like without locks, and must not modify it.
type Snapshot struct {
	// Taken is when the snapshot was built.
	Taken time.Time
	// Sources holds one entry per source (bikeep, then copri/<name>), sorted by name.
	Sources []SourceStatus
	// Locations is sorted by ID. Locations whose data went stale keep their
	// entry (Up false, Devices nil) so their failure stays visible.
	Locations []LocationStatus
	// Operators is sorted by name.
	Operators []OperatorStatus
	// Faults are the active device faults, sorted by location, device, kind.
	Faults []health.Fault
	// RentalFaults are the active rental faults.
	RentalFaults []health.RentalFault
}

// SourceStatus is the walk state of one source.
type SourceStatus struct {
	Name string
	// Up is true when the last walk of the source succeeded.
	Up bool
	// Walked is false until the first walk of this source completed.
	Walked       bool
	LastSuccess  time.Time
	LastDuration time.Duration
	Walks        uint64
	Failures     uint64
	// LastError is the last walk's error, "" when it succeeded.
	LastError string
}

// LocationStatus is the walk state and last good data of one Bikeep location.
type LocationStatus struct {
	ID string
	// Name and Type come from discovery; empty when locations are configured by id.
	Name string
	Type bikeep.LocationType
	// Up is true when the last walk of this location succeeded.
	Up          bool
	LastSuccess time.Time
	LastError   string
	// Stale is true when the location has not been walked successfully for
	// health.stale_after: its devices are no longer reported.
	Stale bool
	// Devices is the last good device list (nil when stale or never walked).
	Devices []bikeep.Device
	// Undecodable is the number of list entries of the last walk that failed
	// to decode: the list is partial, and a device missing from it proves
	// nothing.
	Undecodable int
}

// Complete reports whether the last walk of the location succeeded and
// decoded every device: only then is a device's absence evidence.
func (l *LocationStatus) Complete() bool { return l.Up && l.Undecodable == 0 }

// OperatorStatus is the walk state and last good data of one COPRI operator.
type OperatorStatus struct {
	Name        string
	Up          bool
	LastSuccess time.Time
	LastError   string
	Stale       bool
	Rentals     []copri.Rental
	// Bikes is from bikes_all; nil when bikes_all is disabled or stale.
	Bikes []copri.Bike
}

// Source returns the status of the named source.
func (s *Snapshot) Source(name string) (SourceStatus, bool) {
	for _, src := range s.Sources {
		if src.Name == name {
			return src, true
		}
	}
	return SourceStatus{}, false
}

// Device finds a device of a non-stale location by id. Locations are sorted
// by ID, so callers may look up every fault of a large fleet.
func (s *Snapshot) Device(locationID, deviceID string) (*bikeep.Device, bool) {
	i, ok := slices.BinarySearchFunc(s.Locations, locationID, func(l LocationStatus, id string) int {
		return strings.Compare(l.ID, id)
	})
	if !ok {
		return nil, false
	}
	devs := s.Locations[i].Devices
	for j := range devs {
		if devs[j].ID == deviceID {
			return &devs[j], true
		}
	}
	return nil, false
}

// DeviceCount is the number of devices reported (non-stale locations).
func (s *Snapshot) DeviceCount() int {
	n := 0
	for i := range s.Locations {
		n += len(s.Locations[i].Devices)
	}
	return n
}
