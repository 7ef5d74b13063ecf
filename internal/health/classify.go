package health

import (
	"strconv"
	"strings"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
)

// maxDetailValue bounds how much of an undocumented vendor value is copied
// into a Detail, so a garbage payload cannot flood logs or the status page.
const maxDetailValue = 64

// ClassifyDevice returns the fault conditions visible in one observation of
// d at now, sorted by Kind (lexicographically), before the tracker applies
// grace. It is pure and allocates nothing for a healthy device (nil result).
//
// Only heartbeat_v2.health and heartbeat_v2.dead_since are used for health;
// the deprecated fields (heartbeat, heartbeat_health, heartbeat_v2.sent_at …)
// are simulated by the vendor and never looked at.
func ClassifyDevice(d *bikeep.Device, now time.Time, p Params) []Condition {
	return appendConditions(nil, d, now, p)
}

// appendConditions is ClassifyDevice appending to dst, so the tracker can
// reuse one buffer for a whole walk. Conditions are appended in
// lexicographic Kind order so no sort is needed.
func appendConditions(dst []Condition, d *bikeep.Device, now time.Time, p Params) []Condition {
	var health bikeep.Health
	var deadSince time.Time
	if hb := d.HeartbeatV2; hb != nil {
		health = hb.Health
		deadSince = hb.DeadSince.Time
	}
	hw := d.HardwareState

	if health == bikeep.HealthDead { // "dead"
		dst = append(dst, Condition{Kind: Dead, Onset: deadSince, Detail: `health="DEAD"`})
	}
	if hw == bikeep.HardwareError { // "hardware_error"
		dst = append(dst, Condition{Kind: HardwareError, Detail: `hardware_state="ERROR"`})
	}
	if lockMismatch(d) { // "lock_mismatch"
		dst = append(dst, Condition{
			Kind:   LockMismatch,
			Grace:  p.LockMismatchGrace,
			Detail: `state="` + string(d.State.Value) + `" lock_state="` + string(d.LockState) + `"`,
		})
	}
	if health == bikeep.HealthLongDead { // "long_dead"
		dst = append(dst, Condition{Kind: LongDead, Onset: deadSince, Detail: `health="LONG_DEAD"`})
	}
	if hw == bikeep.HardwareNotResponding { // "not_responding"
		dst = append(dst, Condition{Kind: NotResponding, Detail: `hardware_state="NOT_RESPONDING"`})
	}
	if c, ok := stuckTransition(d, now, p); ok { // "stuck_transition"
		dst = append(dst, c)
	}
	if health == bikeep.HealthUnhealthy { // "unhealthy"
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
func stuckTransition(d *bikeep.Device, now time.Time, p Params) (Condition, bool) {
	sv := d.StateValue()
	stateTrans := sv == bikeep.StateLocking || sv == bikeep.StateUnlocking
	hwTrans := d.HardwareState == bikeep.HardwareDisabledLocking ||
		d.HardwareState == bikeep.HardwareDisabledUnlocking
	if !stateTrans && !hwTrans {
		return Condition{}, false
	}
	c := Condition{Kind: StuckTransition, Grace: p.TransitionGrace}
	switch {
	case stateTrans && hwTrans:
		c.Detail = `state="` + string(sv) + `" hardware_state="` + string(d.HardwareState) + `"`
	case stateTrans:
		c.Detail = `state="` + string(sv) + `"`
	default:
		c.Detail = `hardware_state="` + string(d.HardwareState) + `"`
	}
	if stateTrans {
		c.Onset = d.State.ChangedAt.Time
		if to := d.State.TimeoutAt.Time; !to.IsZero() && now.After(to) {
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
func lockMismatch(d *bikeep.Device) bool {
	if d.State == nil {
		return false
	}
	switch d.HardwareState {
	case bikeep.HardwareDisabled, bikeep.HardwareDisabledLocking, bikeep.HardwareDisabledUnlocking:
		return false // operator intent: the lock is deliberately out of service
	}
	if d.Type == bikeep.TypeGuard {
		return false // a gateway has no lock of its own
	}
	if !d.Type.Known() {
		return false // unknown (or empty) type: we cannot know whether it has a lock
	}
	sv := d.State.Value
	if sv != bikeep.StateLocked && sv != bikeep.StateUnlocked {
		return false
	}
	ls := d.LockState
	if ls != bikeep.LockLocked && ls != bikeep.LockUnlocked {
		return false
	}
	return string(sv) != string(ls)
}

// hasUnknown is the allocation-free check behind unknown_state.
func hasUnknown(d *bikeep.Device) bool {
	if hb := d.HeartbeatV2; hb != nil && hb.Health != "" && !hb.Health.Known() {
		return true
	}
	return (d.HardwareState != "" && !d.HardwareState.Known()) ||
		(d.StateValue() != "" && !d.StateValue().Known()) ||
		(d.LockState != "" && !d.LockState.Known()) ||
		!d.SleepState.Known() || // "" is documented (awake)
		(d.PowerSaveStrategy != "" && !d.PowerSaveStrategy.Known()) ||
		(d.Type != "" && !d.Type.Known())
}

// unknownDetail names every undocumented field and its value, in a fixed
// order, e.g. `hardware_state="QUANTUM_FLUX", type="TELEPORTER"`.
func unknownDetail(d *bikeep.Device) string {
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
	if hb := d.HeartbeatV2; hb != nil {
		add("health", string(hb.Health), hb.Health.Known())
	}
	add("hardware_state", string(d.HardwareState), d.HardwareState.Known())
	add("state", string(d.StateValue()), d.StateValue().Known())
	add("lock_state", string(d.LockState), d.LockState.Known())
	add("sleep_state", string(d.SleepState), d.SleepState.Known())
	add("power_save_strategy", string(d.PowerSaveStrategy), d.PowerSaveStrategy.Known())
	add("type", string(d.Type), d.Type.Known())
	return b.String()
}

// isDead reports whether the device is unreachable (DEAD or LONG_DEAD).
func isDead(d *bikeep.Device) bool {
	h := d.Health()
	return h == bikeep.HealthDead || h == bikeep.HealthLongDead
}
