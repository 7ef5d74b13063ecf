package status

import (
	"fmt"
	"time"

	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/record"
	"github.com/fleetd/fleetd/internal/remediate/policy"
)

// Tones of a remediation state: how the Remediation cell is coloured.
const (
	toneNone = ""
	toneWait = "warn"
	toneBad  = "bad"
	toneOK   = "ok"
)

// stateInput is what the words of one fault's remediation state are made of.
type stateInput struct {
	fault    health.Fault
	device   *record.Device // nil when not in the snapshot
	track    tracked
	rem      *Remediation
	lastSend time.Time
	now      time.Time
}

// remediationState says, in words, what remediation is doing about a fault
// and why — from the engine's own decisions, never by re-running its gates.
func remediationState(in stateInput) (string, string) {
	rem, f, t := in.rem, in.fault, &in.track
	if rem == nil {
		return "", toneNone
	}
	for _, x := range rem.Exhausted {
		if x.DeviceID == f.DeviceID && x.Fault == string(f.Kind) {
			return exhaustedWords(x.Attempts, t.commands), toneBad
		}
	}
	if s := rem.DeviceState[f.DeviceID]; s != "" {
		return s, toneWait
	}
	if !t.haveLast {
		switch {
		case !f.Recoverable:
			return "not recoverable by sync-device — needs a visit", toneBad
		case !rem.Enabled:
			return "remediation disabled", toneNone
		case rem.Trigger == "alertmanager":
			return "left to Alertmanager: no request yet", toneNone
		}
		return "no decision yet", toneNone
	}
	d := t.last
	switch d.Outcome {
	case "sent":
		if n := len(t.commands); n > 0 {
			c := t.commands[n-1]
			switch {
			case c.Verdict != "":
				return fmt.Sprintf("command #%d ended %s — %s", c.Attempt, c.Result, c.Verdict), toneWait
			case c.ended():
				return fmt.Sprintf("command #%d ended %s — awaiting the next walk to verify", c.Attempt, c.Result), toneWait
			case c.Result == resultSendFailed:
				return fmt.Sprintf("command #%d: send failed", c.Attempt), toneBad
			}
		}
		return fmt.Sprintf("command #%d sent %s, waiting for the device", d.Attempt, hhmmss(d.Time)), toneWait
	case "dry_run":
		return fmt.Sprintf("dry run: would send attempt %d", d.Attempt), toneNone
	}
	return skipWords(in, d)
}

func exhaustedWords(attempts int, cmds []command) string {
	s := fmt.Sprintf("exhausted after %d", attempts)
	if n := len(cmds); n > 0 {
		switch c := cmds[n-1]; {
		case c.Verdict != "":
			return s + " — " + c.Verdict
		case c.ended():
			return s + " — last command " + c.Result + ", awaiting verification"
		}
	}
	return s + " attempts"
}

func skipWords(in stateInput, d Decision) (string, string) {
	rem, f := in.rem, in.fault
	switch d.Reason {
	case "disabled":
		return "remediation disabled", toneNone
	case "paused":
		return "paused by an operator", toneWait
	case "blackout":
		return "blackout window: no commands now", toneWait
	case "excluded":
		return "excluded by " + exclusion(rem.Rules, f, in.device), toneNone
	case "not_recoverable":
		return "not recoverable by sync-device — needs a visit", toneBad
	case "unsupported":
		return "device does not take sync-device — needs a visit", toneBad
	case "too_young":
		if until := f.FirstSeen.Add(rem.MinFaultAge); rem.MinFaultAge > 0 && until.After(in.now) {
			return "waiting: too young until " + hhmmss(until), toneWait
		}
		return "waiting: too young (seen by one walk so far)", toneWait
	case "storm":
		return "storm: " + stormWords(rem.Storms, f.LocationID), toneBad
	case "in_flight":
		return "waiting: a command to this device is in flight", toneWait
	case "cooldown":
		if until := in.lastSend.Add(rem.Cooldown); !in.lastSend.IsZero() && until.After(in.now) {
			return "cooldown until " + hhmmss(until), toneWait
		}
		return "cooldown after the last command", toneWait
	case "exhausted":
		return exhaustedWords(d.Attempt, in.track.commands), toneBad
	case "max_in_flight":
		return "waiting: max_in_flight commands already running", toneWait
	case "rate_limited":
		return "waiting: rate limit", toneWait
	case "stopped":
		return "not sent: fleetd is stopping", toneNone
	case "ledger_error":
		return "not sent: the ledger could not record the attempt", toneBad
	}
	return "skipped: " + d.Reason, toneNone
}

// exclusion names the remediation.exclude rule that covers the fault's
// device, as the policy core matches it; a decision taken under rules since
// reloaded away is said in general terms.
func exclusion(rules *policy.Rules, f health.Fault, dev *record.Device) string {
	if rules != nil {
		if rule := rules.Exclusion(f.LocationID, dev, &f); rule != "" {
			return rule
		}
	}
	return "remediation.exclude"
}

func stormWords(storms []Storm, locationID string) string {
	for _, s := range storms {
		if s.Scope == "fleet" {
			return "fleet-wide since " + hhmmss(s.Since) + ", no new commands"
		}
	}
	for _, s := range storms {
		if s.Scope == locationID {
			return "in this location since " + hhmmss(s.Since) + ", no new commands"
		}
	}
	return "no new commands while it lasts"
}

// hhmmss formats a time of today for a sentence; the page's times are UTC.
func hhmmss(t time.Time) string {
	return t.UTC().Format("15:04:05")
}

// commandWords is one command of a fault, e.g. "#2 sync-device + power
// cycle · success → not fixed".
func commandWords(c command) string {
	s := fmt.Sprintf("#%d sync-device", c.Attempt)
	if c.PowerCycle {
		s += " + power cycle"
	}
	switch {
	case c.Result == "":
		return s + " · running"
	case c.Result == resultSendFailed:
		return s + " · send failed"
	case c.Verdict != "":
		return s + " · " + c.Result + " → " + c.Verdict
	}
	return s + " · " + c.Result
}
