package policy

import (
	"time"

	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/record"
)

// Decision sources.
const (
	SourceWalk         = "walk"
	SourceAlertmanager = "alertmanager"
)

// Decision outcomes.
const (
	OutcomeSent    = "sent"
	OutcomeSkipped = "skipped"
	OutcomeDryRun  = "dry_run"
)

// Skip reasons: the reason label of fleetd_remediation_skipped_total. Their
// order is the order of Gates, not of this list.
const (
	ReasonDisabled       = "disabled"
	ReasonTrigger        = "trigger"
	ReasonPaused         = "paused"
	ReasonBlackout       = "blackout"
	ReasonExcluded       = "excluded"
	ReasonNotActive      = "not_active"
	ReasonNotRecoverable = "not_recoverable"
	ReasonUnsupported    = "unsupported"
	ReasonTooYoung       = "too_young"
	ReasonStorm          = "storm"
	ReasonInFlight       = "in_flight"
	ReasonCooldown       = "cooldown"
	ReasonExhausted      = "exhausted"
	ReasonMaxInFlight    = "max_in_flight"
	ReasonStopped        = "stopped"
	ReasonThrottled      = "throttled"
	ReasonRateLimited    = "rate_limited"
	ReasonDryRun         = "dry_run"
	ReasonLedgerError    = "ledger_error"
)

// Shared is the part of the remediation state that a Store holds for every
// replica: the gates marked Shared read only this, Limits and the time, so
// a Store can re-check them in the same transaction that records an
// attempt.
type Shared struct {
	// DeviceInFlight: a command to this device may be running (sending,
	// polling, or its POST failed ambiguously).
	DeviceInFlight bool
	// LastSend is the device's last send still remembered; zero for none.
	LastSend time.Time
	// Attempts are the attempts this fault episode has used.
	Attempts int
	// InFlight counts the commands in flight fleet-wide.
	InFlight int
}

// Limits are the numbers the shared gates compare against.
type Limits struct {
	Cooldown              time.Duration
	MaxAttempts           int
	MaxInFlight           int
	PowerCycleFromAttempt int
}

// PowerCycle reports whether attempt asks the device to power-cycle.
func (l Limits) PowerCycle(attempt int) bool {
	return l.PowerCycleFromAttempt > 0 && attempt >= l.PowerCycleFromAttempt
}

// Input is everything the gates read for one fault.
type Input struct {
	Rules *Rules
	Now   time.Time
	// Source is SourceWalk or the requester of an external request.
	Source     string
	Kind       health.FaultKind
	LocationID string
	// Fault is nil when the fault is not active in the latest snapshot of
	// an Up location; Device is nil when the device is not in it.
	Fault  *health.Fault
	Device *record.Device
	// Paused: an operator paused remediation. Blackout: a blackout window
	// is open. Storm: the fleet or this fault's location is in a storm.
	// Stopped: the engine has shut down.
	Paused, Blackout, Storm, Stopped bool
	// BackoffUntil: the vendor throttled a POST; no send before this.
	BackoffUntil time.Time
	// Tokens are the rate limiter's tokens at Now (peeked, not spent).
	Tokens float64
	Shared Shared
}

// Gate is one row of the gate table.
type Gate struct {
	Reason string
	// Doc says in one line when the gate refuses, for the reference table.
	Doc string
	// Shared gates read only Input.Shared, the limits and the time; a Store
	// checks them again, atomically, when it records the attempt.
	Shared bool
	// Check reports whether the gate refuses. It is nil for a reason that
	// is not a gate but an outcome after them (ledger_error).
	Check func(*Input) bool
}

// Gates returns the gate table in order: the first gate whose Check
// refuses decides the skip reason. A fresh slice on every call.
func Gates() []Gate {
	return []Gate{
		{Reason: ReasonDisabled, Doc: "`remediation.enabled` is false.",
			Check: func(in *Input) bool { return !in.Rules.Enabled }},
		{Reason: ReasonTrigger, Doc: "the request comes from Alertmanager but `remediation.trigger` is `internal`.",
			Check: func(in *Input) bool { return in.Source != SourceWalk && in.Rules.Trigger == config.TriggerInternal }},
		{Reason: ReasonPaused, Doc: "an operator paused remediation (admin API); persisted in the ledger.",
			Check: func(in *Input) bool { return in.Paused }},
		{Reason: ReasonBlackout, Doc: "a `remediation.blackout` window is open.",
			Check: func(in *Input) bool { return in.Blackout }},
		{Reason: ReasonExcluded, Doc: "the location, device type or a device tag is in `remediation.exclude`.",
			Check: func(in *Input) bool { return in.Rules.Excluded(in.LocationID, in.Device, in.Fault) }},
		{Reason: ReasonNotActive, Doc: "a recoverable fault that is not active on the device in the latest walk of an up location.",
			Check: func(in *Input) bool { return in.Kind.RecoverableKind() && (in.Fault == nil || in.Device == nil) }},
		{Reason: ReasonNotRecoverable, Doc: "the fault kind cannot be cured by `sync-device`, or the device is dead.",
			Check: func(in *Input) bool { return !in.Kind.RecoverableKind() || (in.Fault != nil && !in.Fault.Recoverable) }},
		{Reason: ReasonUnsupported, Doc: "the device does not offer `sync-device`, or sleeps out of reach (`DEEP_SLEEP` with `LOCAL_WAKEUP`).",
			Check: func(in *Input) bool { return in.Device != nil && !health.CanSync(in.Device) }},
		{Reason: ReasonTooYoung, Doc: "the fault is younger than `min_fault_age` or was seen by fewer than 2 walks.",
			Check: func(in *Input) bool {
				return in.Fault != nil && (in.Now.Sub(in.Fault.FirstSeen) < in.Rules.MinFaultAge || in.Fault.Walks < 2)
			}},
		{Reason: ReasonStorm, Doc: "the fleet or the location is in a fault storm (faulty ratio over `storm.max_faulty_ratio`, until it has held below for `storm.cooldown`).",
			Check: func(in *Input) bool { return in.Storm }},
		{Reason: ReasonInFlight, Doc: "a command to this device is in flight, or its last POST failed ambiguously and its cooldown has not passed.", Shared: true,
			Check: func(in *Input) bool { return in.Shared.DeviceInFlight }},
		{Reason: ReasonCooldown, Doc: "the device was sent a command less than `cooldown` ago.", Shared: true,
			Check: func(in *Input) bool {
				return !in.Shared.LastSend.IsZero() && in.Now.Sub(in.Shared.LastSend) < in.Rules.Limits.Cooldown
			}},
		{Reason: ReasonExhausted, Doc: "this fault episode has used `max_attempts` attempts.", Shared: true,
			Check: func(in *Input) bool { return in.Shared.Attempts >= in.Rules.Limits.MaxAttempts }},
		{Reason: ReasonMaxInFlight, Doc: "`max_in_flight` commands are in flight fleet-wide.", Shared: true,
			Check: func(in *Input) bool { return in.Shared.InFlight >= in.Rules.Limits.MaxInFlight }},
		{Reason: ReasonStopped, Doc: "fleetd is shutting down and starts no more commands.",
			Check: func(in *Input) bool { return in.Stopped }},
		{Reason: ReasonThrottled, Doc: "the vendor throttled a POST (`429`, or an error code proving no command was created): not an attempt; every send backs off fleet-wide, for the `Retry-After` or exponentially with jitter.",
			Check: func(in *Input) bool { return in.Now.Before(in.BackoffUntil) }},
		{Reason: ReasonRateLimited, Doc: "the `remediation.rate` token bucket is empty.",
			Check: func(in *Input) bool { return in.Tokens < 1 }},
		{Reason: ReasonDryRun, Doc: "`dry_run` is on: every gate passed, the command is logged, not sent; no token, attempt or cooldown is used.",
			Check: func(in *Input) bool { return in.Rules.DryRun }},
		{Reason: ReasonLedgerError, Doc: "not a gate: the attempt could not be recorded durably in the ledger, so nothing was sent."},
	}
}

// SkipReasons returns every skip reason, in gate order (a fresh slice).
func SkipReasons() []string {
	gs := Gates()
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.Reason
	}
	return out
}

// Verdict is what the gates make of one fault.
type Verdict struct {
	// Outcome is OutcomeSent (every gate passed: send), OutcomeDryRun or
	// OutcomeSkipped.
	Outcome string
	// Reason is the gate that decided: the first refusal, ReasonDryRun on
	// a dry run, "" when every gate passed.
	Reason string
	// Attempt is the attempt that would be sent; PowerCycle whether it
	// power-cycles.
	Attempt    int
	PowerCycle bool
}

// Table is a gate table ready for many decisions: Gates builds its
// closures on each call, a decision pass reads them thousands of times.
type Table []Gate

// NewTable returns the gate table.
func NewTable() Table { return Gates() }

// First returns the reason of the first gate that refuses, "" if none.
func (t Table) First(in *Input) string {
	for i := range t {
		if c := t[i].Check; c != nil && c(in) {
			return t[i].Reason
		}
	}
	return ""
}

// Decide passes one fault through the gates.
func (t Table) Decide(in *Input) Verdict {
	v := Verdict{Reason: t.First(in), Attempt: in.Shared.Attempts + 1}
	switch v.Reason {
	case "":
		v.Outcome = OutcomeSent
	case ReasonDryRun:
		v.Outcome = OutcomeDryRun
	default:
		v.Outcome, v.Attempt = OutcomeSkipped, in.Shared.Attempts
		return v
	}
	v.PowerCycle = in.Rules.Limits.PowerCycle(v.Attempt)
	return v
}

// CheckShared runs the shared gates alone, in table order: what a Store
// checks in the transaction that records an attempt.
func CheckShared(l Limits, s Shared, now time.Time) string {
	in := Input{Rules: &Rules{Limits: l}, Now: now, Shared: s}
	for _, g := range Gates() {
		if g.Shared && g.Check(&in) {
			return g.Reason
		}
	}
	return ""
}
