// Package record holds the compact device record fleetd keeps for every
// Bikeep device between walks: only the fields fleetd reads, enums as
// one-byte codes, timestamps as integers and command names as a bit set.
//
// It is its own type rather than bikeep.Device with fields left empty, so
// that no code can read a field the walk never decoded: the compiler says
// which fields exist. The vendor client decodes device lists straight into
// it (bikeep.ListDecoder); bikeep.Device stays for single-device requests.
//
// Records are values inside immutable snapshots. Strings are shared with the
// previous snapshot's record of the same device when unchanged, so an
// unchanged device costs no allocation per walk.
package record

import (
	"slices"
	"time"
)

// Device is what fleetd knows about one device after a walk.
type Device struct {
	// ID is the vendor's id, checked with limits.ID (never rewritten).
	ID string
	// Alias, Code and HardwareID are display strings capped with limits.Name.
	Alias      string
	Code       string
	HardwareID string
	// Tags are the device's tags, each capped with limits.Name. Shared with
	// the previous snapshot when unchanged: never modify.
	Tags []string

	// StateChangedAt and StateTimeoutAt are state.changed_at and
	// state.timeout_at; DeadSince is heartbeat_v2.dead_since.
	StateChangedAt Time
	StateTimeoutAt Time
	DeadSince      Time

	// Commands is the set of documented command names the device offers.
	Commands Commands

	// HasState and HasHeartbeat tell an object that came, even empty, from
	// a null or missing state and heartbeat_v2.
	HasState     bool
	HasHeartbeat bool

	Type          DeviceType
	Health        Health
	HardwareState HardwareState
	State         StateValue
	LockState     LockState
	SleepState    SleepState
	PowerSave     PowerSaveStrategy

	// other holds the raw values of enum fields whose value is not
	// documented (code Other); nil for nearly every device.
	other *Undocumented
}

// Undocumented holds the values, as sent (capped with limits.Name), of enum
// fields that carry a value the API reference does not list.
type Undocumented struct {
	Type, Health, HardwareState, State, LockState, SleepState, PowerSave string
}

// SetUndocumented attaches u, the raw values of the fields whose code is
// Other. The pointer is kept: share it between snapshots only if unchanged.
func (d *Device) SetUndocumented(u *Undocumented) { d.other = u }

// Undocumented returns the raw values of undocumented enum fields, or nil.
func (d *Device) Undocumented() *Undocumented { return d.other }

// Equal reports whether d and o hold the same values.
func (d *Device) Equal(o *Device) bool {
	if d.ID != o.ID || d.Alias != o.Alias || d.Code != o.Code || d.HardwareID != o.HardwareID ||
		d.StateChangedAt != o.StateChangedAt || d.StateTimeoutAt != o.StateTimeoutAt ||
		d.DeadSince != o.DeadSince || d.Commands != o.Commands || d.Type != o.Type ||
		d.HasState != o.HasState || d.HasHeartbeat != o.HasHeartbeat ||
		d.Health != o.Health || d.HardwareState != o.HardwareState || d.State != o.State ||
		d.LockState != o.LockState || d.SleepState != o.SleepState || d.PowerSave != o.PowerSave ||
		!slices.Equal(d.Tags, o.Tags) {
		return false
	}
	switch {
	case d.other == o.other:
		return true
	case d.other == nil || o.other == nil:
		return false
	}
	return *d.other == *o.other
}

// TypeName is the device's type as the API spells it ("" when absent).
func (d *Device) TypeName() string {
	if d.Type == TypeOther && d.other != nil {
		return d.other.Type
	}
	return d.Type.String()
}

// HealthName is heartbeat_v2.health as the API spells it ("" when absent).
func (d *Device) HealthName() string {
	if d.Health == HealthOther && d.other != nil {
		return d.other.Health
	}
	return d.Health.String()
}

// HardwareStateName is hardware_state as the API spells it.
func (d *Device) HardwareStateName() string {
	if d.HardwareState == HardwareOther && d.other != nil {
		return d.other.HardwareState
	}
	return d.HardwareState.String()
}

// StateName is state.value as the API spells it ("" when state is null).
func (d *Device) StateName() string {
	if d.State == StateOther && d.other != nil {
		return d.other.State
	}
	return d.State.String()
}

// LockStateName is lock_state as the API spells it.
func (d *Device) LockStateName() string {
	if d.LockState == LockOther && d.other != nil {
		return d.other.LockState
	}
	return d.LockState.String()
}

// SleepStateName is sleep_state as the API spells it ("" means awake).
func (d *Device) SleepStateName() string {
	if d.SleepState == SleepOther && d.other != nil {
		return d.other.SleepState
	}
	return d.SleepState.String()
}

// PowerSaveName is power_save_strategy as the API spells it.
func (d *Device) PowerSaveName() string {
	if d.PowerSave == PowerOther && d.other != nil {
		return d.other.PowerSave
	}
	return d.PowerSave.String()
}

// Supports reports whether the device offers the documented command name.
func (d *Device) Supports(name string) bool { return d.Commands.Has(name) }

// Time is an instant in Unix nanoseconds; 0 means none (null, "" or
// absent). Decoders refuse instants they cannot represent (at or before the
// Unix epoch, after 2262), so 0 is never a real instant.
type Time int64

// FromTime converts t; the zero time.Time is none.
func FromTime(t time.Time) Time {
	if t.IsZero() {
		return 0
	}
	return Time(t.UnixNano())
}

// Representable reports whether t can be held in a Time: a zero t (none) or
// an instant after the Unix epoch and before the end of int64 nanoseconds.
func Representable(t time.Time) bool {
	if t.IsZero() {
		return true
	}
	return t.After(time.Unix(0, 0)) && !t.After(time.Unix(0, 1<<63-1))
}

// IsZero reports whether t is none.
func (t Time) IsZero() bool { return t == 0 }

// Time returns t as a time.Time in UTC; the zero time.Time for none.
func (t Time) Time() time.Time {
	if t == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(t)).UTC()
}
