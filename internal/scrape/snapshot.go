package scrape

import (
	"slices"
	"strings"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/clients/copri"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/record"
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
//
// A walk of a location ends in one of three ways, and only the first is
// evidence about every device of the location (see Complete):
//   - complete: the list was read whole. Up, Undecodable 0, Carried nil.
//     A device missing from it is gone.
//   - partial: the list was read, but Undecodable of its entries were not
//     (a field of the wrong type, a body that breaks off inside the list,
//     a record without any field health is judged by).
//     Up, Undecodable > 0. A device missing from it is unknown, not gone: it
//     is in Carried with its last known record, and its faults stay in
//     Snapshot.Faults with their episode (same FirstSeen).
//   - failed: no list (transport or HTTP error, or a 200 whose "data" is
//     null, missing or not an array). Up false, LastError set; Devices,
//     Carried and the faults of the location are the last good data, kept
//     until health.stale_after.
type LocationStatus struct {
	ID string
	// Name and Type come from discovery; empty when locations are configured by id.
	Name string
	Type bikeep.LocationType
	// Up is true when the last walk of this location returned a list,
	// complete or partial.
	Up          bool
	LastSuccess time.Time
	// LastError is why the last walk failed; "" when it returned a list
	// (a partial list's problem is in DecodeError).
	LastError string
	// FailingSince is when the current run of failed walks began; zero
	// while Up.
	FailingSince time.Time
	// ExpectedDevices is the Location API's devices.total from the last
	// discovery; 0 when unknown (locations configured by id).
	ExpectedDevices int
	// Stale is true when the location has not been walked successfully for
	// health.stale_after: its devices are no longer reported.
	Stale bool
	// Devices are the devices read from the location's last list, at
	// LastSuccess: when Up, exactly the devices observed by this walk; when
	// down, those of the last walk that returned a list. Nil when stale or
	// never walked. Never includes Carried. They are compact records;
	// consecutive snapshots share the slice of a location whose devices did
	// not change.
	Devices []record.Device
	// Carried are devices not in the last list, which was partial, that
	// were in an earlier one: last known records, not observations. A device
	// is carried until it is read again, a complete list lacks it, or it has
	// not been read for remediation.forget_after. Nil after a complete list;
	// kept as it was when the location fails.
	Carried []record.Device
	// Undecodable is the number of entries of the last list that could not
	// be decoded; > 0 makes the location partial. 0 when the last walk
	// failed (LastError says why) or the list was complete.
	Undecodable int
	// DecodeError is the first undecodable entry's error (length capped,
	// for display), "" when Undecodable is 0.
	DecodeError string
	// UndecodableTotal counts the undecodable entries of all walks of the
	// location since fleetd started.
	UndecodableTotal uint64
}

// Complete reports whether the location's last walk read its whole list:
// only then is a device's absence, or its showing without a fault, evidence
// about it.
func (l LocationStatus) Complete() bool { return l.Up && l.Undecodable == 0 }

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

// Device finds a device of a non-stale location by id, among its Devices
// and then its Carried (last known records). Locations are sorted by ID, so
// callers may look up every fault of a large fleet.
func (s *Snapshot) Device(locationID, deviceID string) (*record.Device, bool) {
	i, ok := slices.BinarySearchFunc(s.Locations, locationID, func(l LocationStatus, id string) int {
		return strings.Compare(l.ID, id)
	})
	if !ok {
		return nil, false
	}
	for _, devs := range [][]record.Device{s.Locations[i].Devices, s.Locations[i].Carried} {
		for j := range devs {
			if devs[j].ID == deviceID {
				return &devs[j], true
			}
		}
	}
	return nil, false
}

// DeviceCount is the number of devices reported (non-stale locations),
// carried ones included.
func (s *Snapshot) DeviceCount() int {
	n := 0
	for i := range s.Locations {
		n += len(s.Locations[i].Devices) + len(s.Locations[i].Carried)
	}
	return n
}
