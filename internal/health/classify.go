package health

import (
	"strconv"
	"strings"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/record"
)

// maxDetailValue bounds how much of an undocumented vendor value is copied
// into a Detail, so a garbage payload cannot flood logs or the status page.
const maxDetailValue = 64

// ClassifyDevice returns the fault conditions visible in one observation of
// d at now, sorted by Kind (lexicographically), before the tracker applies
// grace. It classifies d's compact record (Classify): what fleetd keeps is
// what it judges.
func ClassifyDevice(d *bikeep.Device, now time.Time, p Params) []Condition {
	r := d.Record()
	return Classify(&r, now, p)
}

// Classify returns the fault conditions visible in one observation of the
// record d at now, sorted by Kind (lexicographically), before the tracker
// applies grace. It is pure and allocates nothing for a healthy device (nil
// result).
//
// Only heartbeat_v2.health and heartbeat_v2.dead_since are used for health;
// the deprecated fields (heartbeat, heartbeat_health, heartbeat_v2.sent_at …)
// are simulated by the vendor and never kept.
func Classify(d *record.Device, now time.Time, p Params) []Condition {
	return appendConditions(nil, d, now, p)
}

// appendConditions is Classify appending to dst, so the tracker can reuse
// one buffer for a whole walk. Conditions are appended in lexicographic
// Kind order so no sort is needed.
func appendConditions(dst []Condition, d *record.Device, now time.Time, p Params) []Condition {
	health := d.Health
	deadSince := d.DeadSince.Time()
	hw := d.HardwareState

	if health == record.HealthDead { // "dead"
		dst = append(dst, Condition{Kind: Dead, Onset: deadSince, Detail: `health="DEAD"`})
	}
	if hw == record.HardwareError { // "hardware_error"
		dst = append(dst, Condition{Kind: HardwareError, Detail: `hardware_state="ERROR"`})
	}
	if lockMismatch(d) { // "lock_mismatch"
		dst = append(dst, Condition{
			Kind:   LockMismatch,
			Grace:  p.LockMismatchGrace,
			Detail: `state="` + d.StateName() + `" lock_state="` + d.LockStateName() + `"`,
		})
	}
	if health == record.HealthLongDead { // "long_dead"
		dst = append(dst, Condition{Kind: LongDead, Onset: deadSince, Detail: `health="LONG_DEAD"`})
	}
	if hw == record.HardwareNotResponding { // "not_responding"
		dst = append(dst, Condition{Kind: NotResponding, Detail: `hardware_state="NOT_RESPONDING"`})
	}
	if c, ok := stuckTransition(d, now, p); ok { // "stuck_transition"
		dst = append(dst, c)
	}
	if health == record.HealthUnhealthy { // "unhealthy"
		dst = append(dst, Condition{Kind: Unhealthy, Detail: `health="UNHEALTHY"`})
	}
	if hasUnknown(d) { // "unknown_state"
		dst = append(dst, Condition{Kind: UnknownState, Detail: unknownDetail(d)})
	}
	return dst
}

// stuckTransition reports a LOCKING/UNLOCKING state or a DISABLED_LOCKING/
// DISABLED_UNLOCKING hardware state. A logical transition is timed by the
// vendor's state.timeout_at and state.changed_at. A hardware-only transition
// is timed from first seen: state.changed_at then dates the logical state,
// not the hardware transition, and would make the fault fire at once.
func stuckTransition(d *record.Device, now time.Time, p Params) (Condition, bool) {
	sv := d.State
	stateTrans := sv == record.StateLocking || sv == record.StateUnlocking
	hwTrans := d.HardwareState == record.HardwareDisabledLocking ||
		d.HardwareState == record.HardwareDisabledUnlocking
	if !stateTrans && !hwTrans {
		return Condition{}, false
	}
	c := Condition{Kind: StuckTransition, Grace: p.TransitionGrace}
	switch {
	case stateTrans && hwTrans:
		c.Detail = `state="` + sv.String() + `" hardware_state="` + d.HardwareState.String() + `"`
	case stateTrans:
		c.Detail = `state="` + sv.String() + `"`
	default:
		c.Detail = `hardware_state="` + d.HardwareState.String() + `"`
	}
	if stateTrans {
		c.Onset = d.StateChangedAt.Time()
		if to := d.StateTimeoutAt.Time(); !to.IsZero() && now.After(to) {
			c.Grace = 0
			c.Detail += " past timeout_at"
		}
	}
	return c, true
}

// lockMismatch reports whether the logical state and the physical lock
// disagree. The comparison is the same for every type with a lock: the
// vendor's remark that BIKE_HOUSE_DOOR is "inverted" is about availability
// (a door is available when LOCKED, its idle state), never about its lock
// reading the opposite of its state, so an idle door is LOCKED/LOCKED like a
// locker at rest. Only LOCKED and UNLOCKED are compared: ALLOCATED, BOOKED
// and transitions have no settled expectation. Where there is no clear
// expectation it says no: a false lock_mismatch would make fleetd send
// commands to a healthy lock.
func lockMismatch(d *record.Device) bool {
	switch d.HardwareState {
	case record.HardwareDisabled, record.HardwareDisabledLocking, record.HardwareDisabledUnlocking:
		return false // operator intent: the lock is deliberately out of service
	}
	switch d.Type {
	case record.TypeGuard:
		return false // a gateway has no lock of its own
	case record.TypeNone, record.TypeOther:
		return false // unknown (or empty) type: we cannot know whether it has a lock
	}
	sv := d.State // StateNone when state is null
	if sv != record.StateLocked && sv != record.StateUnlocked {
		return false
	}
	ls := d.LockState
	if ls != record.LockLocked && ls != record.LockUnlocked {
		return false
	}
	return (sv == record.StateLocked) != (ls == record.LockLocked)
}

// hasUnknown is the allocation-free check behind unknown_state.
func hasUnknown(d *record.Device) bool {
	return d.Health == record.HealthOther || d.HardwareState == record.HardwareOther ||
		d.State == record.StateOther || d.LockState == record.LockOther ||
		d.SleepState == record.SleepOther || // "" is documented (awake)
		d.PowerSave == record.PowerOther || d.Type == record.TypeOther
}

// unknownDetail names every undocumented field and its value, in a fixed
// order, e.g. `hardware_state="QUANTUM_FLUX", type="TELEPORTER"`.
func unknownDetail(d *record.Device) string {
	var b strings.Builder
	add := func(field, value string, known bool) {
		if value == "" || known {
			return
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		if len(value) > maxDetailValue {
			value = value[:maxDetailValue] + "…"
		}
		b.WriteString(field)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(value))
	}
	add("health", d.HealthName(), d.Health != record.HealthOther)
	add("hardware_state", d.HardwareStateName(), d.HardwareState != record.HardwareOther)
	add("state", d.StateName(), d.State != record.StateOther)
	add("lock_state", d.LockStateName(), d.LockState != record.LockOther)
	add("sleep_state", d.SleepStateName(), d.SleepState != record.SleepOther)
	add("power_save_strategy", d.PowerSaveName(), d.PowerSave != record.PowerOther)
	add("type", d.TypeName(), d.Type != record.TypeOther)
	return b.String()
}

// isDead reports whether the device is unreachable (DEAD or LONG_DEAD).
func isDead(d *record.Device) bool {
	return d.Health == record.HealthDead || d.Health == record.HealthLongDead
}
