// Package store is the remediation ledger: the durable memory of fleetd's
// remediation (pause, storms, fault episodes and their attempts, per-device
// last sends, every command from its write-ahead record to its
// verification) behind one Store interface. Bolt, a bbolt file, is the
// embedded implementation for one replica; package storetest holds the
// contract every implementation must pass.
package store

import (
	"context"
	"strconv"
	"time"

	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/remediate/policy"
)

// Store is the remediation ledger. Implementations are safe for concurrent
// use, and every method that returns nil has made its change durable.
type Store interface {
	// Load reads and validates the whole ledger.
	Load(ctx context.Context) (State, error)
	// Reserve is the one operation that lets a command leave: atomically,
	// it re-checks the shared gates (policy.CheckShared: device in flight,
	// cooldown, attempts of the episode, fleet in-flight cap) against the
	// ledger itself and, only if they all pass, records the attempt — the
	// episode's attempt count, the device's last send and the command's
	// write-ahead record — before the POST. A refusal is not an error: it
	// comes back in Reserved.Refused and nothing is written.
	Reserve(ctx context.Context, r Reservation) (Reserved, error)
	// Refund gives back the attempt of a command that Reserve recorded but
	// that was never sent (the POST was not started): an attempt is a POST,
	// and one that never left must not use up the episode. Atomically with
	// Reserve, it deletes the command's write-ahead record if it is still
	// there (PhaseSending, or PhaseUnknown where a replica taking the
	// location over rewrote it) and takes one attempt off the episode, as
	// long as the episode is still cmd's and counts its attempt (deleting an
	// episode left with none; prevAttempt is its last attempt again unless
	// a later one was recorded). A record of cmd past the write-ahead
	// (polling, done) means a command exists: nothing is written. The
	// device's last send stays: the cooldown is kept. It reports whether the
	// attempt was given back.
	Refund(ctx context.Context, cmd Command, prevAttempt time.Time) (bool, error)
	// Apply makes ops durable in one transaction, all or none.
	Apply(ctx context.Context, ops ...Op) error
	// String names the ledger for logs and errors (never a credential).
	String() string
	Close() error
}

// Reservation asks to record one attempt.
//
// A networked Store shared by replicas will also carry the slot the device
// belongs to and the caller's fencing epoch, and refuse the reservation
// once the caller no longer holds the slot.
type Reservation struct {
	// Episode names the fault episode by device and fault and carries the
	// alias and location to record; its FirstSeen is used only when the
	// ledger has no episode of that pair yet. Its other fields are ignored:
	// the ledger's own record is the truth.
	Episode Episode
	// Source is the requester of the decision (walk, alertmanager).
	Source string
	Now    time.Time
	Limits policy.Limits
}

// Reserved is the answer to a Reservation.
type Reserved struct {
	// Refused is the reason of the shared gate that refused; "" when the
	// attempt was recorded.
	Refused string
	// Episode and Command are the records written (zero when refused):
	// the episode with its attempts counted (and no longer absent), the
	// command in PhaseSending with the episode's first-seen time.
	Episode Episode
	Command Command
}

// State is everything a ledger holds.
type State struct {
	Pause    Pause
	Episodes []Episode
	Devices  []Device
	Commands []Command
	Storms   []Storm
}

// Command phases.
const (
	// PhaseSending: written ahead of the POST; the outcome is not known
	// yet. Found at start-up it means fleetd died mid-POST: treat as
	// unknown.
	PhaseSending = "sending"
	// PhasePolling: the vendor created the command; it is being polled.
	PhasePolling = "polling"
	// PhaseUnknown: the POST failed ambiguously; the command may exist. It
	// blocks the device until the cooldown after its send has passed.
	PhaseUnknown = "unknown"
	// PhaseDone: the command ended (success, error, timeout) and awaits
	// verification on a later walk.
	PhaseDone = "done"
)

// Pause is the operator's pause state.
type Pause struct {
	Paused bool      `json:"paused"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
}

// Episode is one fault episode that has used at least one attempt. An
// episode is identified by (device, fault) alone: a restart, a list glitch
// or a reload gives the fault a new first-seen time, and none of them may
// hand the device a fresh set of attempts. FirstSeen is when the episode
// started; it stays part of the ledger key, so one (device, fault) pair
// must have one record.
type Episode struct {
	DeviceID    string           `json:"device_id"`
	Alias       string           `json:"alias,omitempty"`
	LocationID  string           `json:"location_id"`
	Fault       health.FaultKind `json:"fault"`
	FirstSeen   time.Time        `json:"first_seen"`
	Attempts    int              `json:"attempts"`
	LastAttempt time.Time        `json:"last_attempt"`
	// AbsentSince is when the device was first missing from a complete list
	// of its location since it was last seen with the fault; zero while seen.
	AbsentSince time.Time `json:"absent_since,omitzero"`
}

// Key identifies the episode's record in the ledger.
func (r *Episode) Key() string {
	return episodeKey(r.DeviceID, r.Fault, r.FirstSeen)
}

func episodeKey(deviceID string, fault health.FaultKind, firstSeen time.Time) string {
	return episodePrefix(deviceID, fault) + strconv.FormatInt(firstSeen.UnixNano(), 10)
}

// episodePrefix is the start of the keys of every record of (device, fault).
func episodePrefix(deviceID string, fault health.FaultKind) string {
	return deviceID + "\x00" + string(fault) + "\x00"
}

func (r *Episode) valid(key string) bool {
	return r.DeviceID != "" && r.Fault != "" && !r.FirstSeen.IsZero() && r.Attempts >= 1 && r.Key() == key
}

// Device remembers a device's last send, for the per-device cooldown.
type Device struct {
	DeviceID string    `json:"device_id"`
	LastSend time.Time `json:"last_send"`
}

func (r *Device) valid(key string) bool { return r.DeviceID == key && !r.LastSend.IsZero() }

// Command is one sync-device attempt, from the write-ahead record to its
// verification.
type Command struct {
	DeviceID      string           `json:"device_id"`
	Alias         string           `json:"alias,omitempty"`
	LocationID    string           `json:"location_id"`
	Fault         health.FaultKind `json:"fault"`
	FirstSeen     time.Time        `json:"first_seen"`
	Attempt       int              `json:"attempt"`
	PowerCycle    bool             `json:"power_cycle,omitempty"`
	SentAt        time.Time        `json:"sent_at"`
	Phase         string           `json:"phase"`
	CommandID     string           `json:"command_id,omitempty"`
	TimeoutAt     time.Time        `json:"timeout_at,omitzero"`
	Result        string           `json:"result,omitempty"`
	EndedAt       time.Time        `json:"ended_at,omitzero"`
	CorrelationID string           `json:"correlation_id,omitempty"`
	Source        string           `json:"source,omitempty"`
}

// Key identifies the command in the ledger: its episode and attempt.
func (r *Command) Key() string {
	return episodeKey(r.DeviceID, r.Fault, r.FirstSeen) + "\x00" + strconv.Itoa(r.Attempt)
}

// InFlight reports whether the command blocks its device.
func (r *Command) InFlight() bool { return r.Phase != PhaseDone }

func (r *Command) valid(key string) bool {
	ok := r.DeviceID != "" && r.Fault != "" && r.Attempt >= 1 && !r.SentAt.IsZero() && r.Key() == key
	switch r.Phase {
	case PhaseSending, PhaseUnknown:
		return ok
	case PhasePolling:
		return ok && r.CommandID != ""
	case PhaseDone:
		return ok && r.CommandID != "" && r.Result != "" && !r.EndedAt.IsZero()
	}
	return false
}

// Storm is an active storm. The hold-below timer is deliberately not
// persisted: time fleetd was down was not measured, so after a restart the
// ratio must hold below the limit for a whole cooldown again.
type Storm struct {
	// Scope is policy.FleetScope or LocationScope(id).
	Scope string    `json:"scope"`
	Since time.Time `json:"since"`
}

const locationScopePrefix = "location:"

// LocationScope is the ledger scope of a location's storm.
func LocationScope(locationID string) string { return locationScopePrefix + locationID }

// ScopeLocation returns the location of a location storm's scope.
func ScopeLocation(scope string) (string, bool) {
	if len(scope) > len(locationScopePrefix) && scope[:len(locationScopePrefix)] == locationScopePrefix {
		return scope[len(locationScopePrefix):], true
	}
	return "", false
}

func (r *Storm) valid(key string) bool { return r.Scope == key && r.Scope != "" && !r.Since.IsZero() }

// Op is one change to the ledger, built by the functions below.
type Op struct {
	kind  opKind
	key   string
	value any // nil for a delete
}

type opKind int

const (
	opPause opKind = iota
	opEpisode
	opDevice
	opCommand
	opStorm
)

func SetPause(p Pause) Op             { return Op{opPause, "", &p} }
func PutEpisode(r Episode) Op         { return Op{opEpisode, r.Key(), &r} }
func DeleteEpisode(key string) Op     { return Op{opEpisode, key, nil} }
func PutDevice(r Device) Op           { return Op{opDevice, r.DeviceID, &r} }
func DeleteDevice(deviceID string) Op { return Op{opDevice, deviceID, nil} }
func PutCommand(r Command) Op         { return Op{opCommand, r.Key(), &r} }
func DeleteCommand(key string) Op     { return Op{opCommand, key, nil} }
func PutStorm(r Storm) Op             { return Op{opStorm, r.Scope, &r} }
func DeleteStorm(scope string) Op     { return Op{opStorm, scope, nil} }

// refundOps is what every Store writes to give back the attempt of cmd,
// never sent, given the episode and the command record it holds under cmd's
// key (nil if none). The write-ahead record goes. The episode counts one
// attempt fewer as long as it is cmd's episode (same first-seen time) and
// still counts cmd's attempt: a replica taking the location over may have
// released the record as unknown and sent the next attempt meanwhile, and
// the attempt that never left must still not count. A record past the
// write-ahead (polling, done) says a command was created: then nothing is
// given back.
func refundOps(cmd Command, prevAttempt time.Time, ep Episode, rec *Command) (ops []Op, refunded bool) {
	if rec != nil {
		if (rec.Phase != PhaseSending && rec.Phase != PhaseUnknown) || !rec.SentAt.Equal(cmd.SentAt) {
			return nil, false
		}
		ops = append(ops, DeleteCommand(cmd.Key()))
	}
	if ep.Attempts < cmd.Attempt || !ep.FirstSeen.Equal(cmd.FirstSeen) {
		return ops, false
	}
	if ep.Attempts == cmd.Attempt && ep.LastAttempt.Equal(cmd.SentAt) {
		ep.LastAttempt = prevAttempt // else a later attempt is the last
	}
	ep.Attempts--
	if ep.Attempts == 0 {
		return append(ops, DeleteEpisode(ep.Key())), true
	}
	return append(ops, PutEpisode(ep)), true
}

// nextAttempt is what every Store records once the shared gates passed: the
// episode with one more attempt (seen again, so no longer absent) and the
// write-ahead record of its command.
func nextAttempt(ep Episode, r Reservation) (Episode, Command) {
	ep.Alias, ep.LocationID, ep.AbsentSince = r.Episode.Alias, r.Episode.LocationID, time.Time{}
	ep.Attempts++
	ep.LastAttempt = r.Now
	return ep, Command{DeviceID: ep.DeviceID, Alias: ep.Alias, LocationID: ep.LocationID, Fault: ep.Fault,
		FirstSeen: ep.FirstSeen, Attempt: ep.Attempts, PowerCycle: r.Limits.PowerCycle(ep.Attempts),
		SentAt: r.Now, Phase: PhaseSending, Source: r.Source}
}
