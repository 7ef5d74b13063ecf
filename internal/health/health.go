// Package health turns vendor observations (Bikeep devices, COPRI rentals and
// bikes) into faults and tracks how long each fault has lasted.
//
// It is pure: no I/O, no clock (every function takes the observation time),
// no logging. ClassifyDevice looks at one device in one observation; the
// Tracker remembers conditions across walks so that debounce and grace
// periods ("held longer than …") can be applied and every fault knows when
// it started.
package health

import (
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
)

// FaultKind names a device fault. The values are the `fault` label of the
// exported metrics, so they are part of the user-facing contract.
type FaultKind string

// Device fault kinds (see the "Faults" section of DESIGN.md).
const (
	Unhealthy          FaultKind = "unhealthy"
	Dead               FaultKind = "dead"
	LongDead           FaultKind = "long_dead"
	HardwareError      FaultKind = "hardware_error"
	NotResponding      FaultKind = "not_responding"
	StuckTransition    FaultKind = "stuck_transition"
	LockMismatch       FaultKind = "lock_mismatch"
	RentalLockMismatch FaultKind = "rental_lock_mismatch"
	UnknownState       FaultKind = "unknown_state"
)

// DeviceFaultKinds returns every device fault kind in a fixed order. The
// slice is fresh on each call, so callers may modify it.
func DeviceFaultKinds() []FaultKind {
	return []FaultKind{
		Unhealthy, Dead, LongDead, HardwareError, NotResponding,
		StuckTransition, LockMismatch, RentalLockMismatch, UnknownState,
	}
}

// RecoverableKind reports whether a fault of this kind is one a sync-device
// command can cure. A particular Fault is recoverable only if, in addition,
// its device is not dead (see Fault.Recoverable).
func (k FaultKind) RecoverableKind() bool {
	switch k {
	case Unhealthy, HardwareError, NotResponding, StuckTransition, LockMismatch, RentalLockMismatch:
		return true
	}
	return false
}

// RentalFaultKind names a COPRI rental fault.
type RentalFaultKind string

// Rental fault kinds.
const (
	// RentalLockMismatchKind: an ended/available bike whose lock is open, or
	// a defect bike reported open (from bikes_all).
	RentalLockMismatchKind RentalFaultKind = "lock_mismatch"
	// LockingStuck: a rental's lock has been locking/unlocking too long.
	LockingStuck RentalFaultKind = "locking_stuck"
	// Overdue: a rental has been open longer than RentalMaxDuration.
	Overdue RentalFaultKind = "overdue"
)

// RentalFaultKinds returns every rental fault kind in a fixed order (a fresh
// slice on each call).
func RentalFaultKinds() []RentalFaultKind {
	return []RentalFaultKind{RentalLockMismatchKind, LockingStuck, Overdue}
}

// Params are the tunables of fault classification (config section health).
type Params struct {
	// LockMismatchGrace is how long a lock disagreement must last, from when
	// it was first seen, before it is a fault: it must outlive normal
	// lock/unlock transitions.
	LockMismatchGrace time.Duration
	// TransitionGrace is how long LOCKING/UNLOCKING (or DISABLED_LOCKING/
	// DISABLED_UNLOCKING, or a rental's locking/unlocking) may last.
	TransitionGrace time.Duration
	// RentalMaxDuration is how long a rental may stay open before it is
	// overdue; zero or negative disables the check.
	RentalMaxDuration time.Duration
}

// Match fields: how a COPRI bike id is looked up among Bikeep devices.
const (
	MatchAlias      = "alias"
	MatchCode       = "code"
	MatchHardwareID = "hardware_id"
	MatchTag        = "tag"
)

// Match says how a COPRI bike id maps to a Bikeep device.
type Match struct {
	// Field is MatchAlias, MatchCode, MatchHardwareID or MatchTag. Any other
	// value matches nothing.
	Field string
	// TagPrefix is used with MatchTag: the device carries the tag
	// TagPrefix+bike.
	TagPrefix string
}

// Condition is a fault condition visible in one observation, before grace
// and debounce are applied.
type Condition struct {
	Kind FaultKind
	// Onset is the vendor-given start of the condition (dead_since,
	// state.changed_at), zero when the vendor says nothing.
	Onset time.Time
	// Grace is how long the condition must hold before it is a fault,
	// measured from Onset when it is non-zero, else from when the tracker
	// first saw the condition. Zero means the condition is a fault at once.
	Grace time.Duration
	// Detail is a short human-readable explanation, e.g.
	// `hardware_state="QUANTUM_FLUX"`.
	Detail string
}

// ActiveAt reports whether the condition, first seen at firstSeen, is a
// fault at now: its grace has been exceeded (strictly longer than Grace).
func (c Condition) ActiveAt(firstSeen, now time.Time) bool {
	return graceElapsed(c.Onset, c.Grace, firstSeen, now)
}

// since is when the fault started: the vendor onset if known, else first seen.
func since(onset, firstSeen time.Time) time.Time {
	if !onset.IsZero() {
		return onset
	}
	return firstSeen
}

func graceElapsed(onset time.Time, grace time.Duration, firstSeen, now time.Time) bool {
	if grace <= 0 {
		return true
	}
	return now.Sub(since(onset, firstSeen)) > grace
}

// Fault is an active device fault.
type Fault struct {
	Kind       FaultKind
	DeviceID   string
	Alias      string
	Code       string
	LocationID string
	DeviceType bikeep.DeviceType
	// Recoverable: the kind is recoverable and the device is not dead or
	// long dead (an unreachable device cannot receive sync-device).
	Recoverable bool
	// Since is when the fault started: dead_since for dead/long_dead, else
	// the vendor onset if known, else FirstSeen.
	Since time.Time
	// FirstSeen is the observation that first saw the condition in this
	// episode.
	FirstSeen time.Time
	// Walks counts the consecutive observations that saw the condition.
	Walks  int
	Detail string
	// Operator and BookingID are set for rental_lock_mismatch only.
	Operator  string
	BookingID string
}

// RentalFault is an active COPRI rental fault.
type RentalFault struct {
	Kind RentalFaultKind
	// Operator is the configured COPRI operator name.
	Operator string
	// BookingID is set for faults of open rentals (locking_stuck, overdue);
	// empty for lock_mismatch, which comes from bikes_all.
	BookingID string
	Bike      string
	Station   string
	// Since is when the fault started: StartTime+RentalMaxDuration for
	// overdue, else FirstSeen.
	Since     time.Time
	FirstSeen time.Time
	Walks     int
	Detail    string
}
