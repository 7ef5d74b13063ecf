package remediate

import (
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fleetd/fleetd/internal/health"
)

// Status is a snapshot of the engine for the status page and the API.
type Status struct {
	Enabled      bool       `json:"enabled"`
	DryRun       bool       `json:"dry_run"`
	Trigger      string     `json:"trigger"`
	Paused       bool       `json:"paused"`
	PausedReason string     `json:"paused_reason,omitempty"`
	PausedSince  *time.Time `json:"paused_since,omitempty"`
	// Storms are the active storms, fleet first, then by location id.
	Storms []StormStatus `json:"storms"`
	// InFlight are the commands blocking their device, by send time.
	InFlight []CommandStatus `json:"in_flight"`
	// Exhausted are the episodes that used every attempt, by device.
	Exhausted []EpisodeStatus `json:"exhausted"`
	// Decisions are the last 100 changed decisions, newest first.
	Decisions []Decision `json:"decisions"`
}

// StormStatus is one active storm.
type StormStatus struct {
	// Scope is "fleet" or a location id.
	Scope string    `json:"scope"`
	Since time.Time `json:"since"`
	// BelowSince is when the ratio fell back to the limit; the storm ends
	// once it has stayed there for storm.cooldown. Absent while over.
	BelowSince *time.Time `json:"below_since,omitempty"`
	// Ratio is the faulty share of the scope's devices at the latest walk
	// that measured it (0 until one has, after a restart).
	Ratio float64 `json:"ratio"`
}

// CommandStatus is one command in flight.
type CommandStatus struct {
	DeviceID   string           `json:"device_id"`
	Alias      string           `json:"alias,omitempty"`
	LocationID string           `json:"location_id"`
	Fault      health.FaultKind `json:"fault"`
	Attempt    int              `json:"attempt"`
	PowerCycle bool             `json:"power_cycle"`
	SentAt     time.Time        `json:"sent_at"`
	CommandID  string           `json:"command_id,omitempty"`
	// State is sending (POST under way), polling, or unknown (the POST
	// failed ambiguously; blocks the device until its cooldown passes).
	State string `json:"state"`
}

// EpisodeStatus is a fault episode that used every attempt.
type EpisodeStatus struct {
	DeviceID    string           `json:"device_id"`
	Alias       string           `json:"alias,omitempty"`
	LocationID  string           `json:"location_id"`
	Fault       health.FaultKind `json:"fault"`
	FirstSeen   time.Time        `json:"first_seen"`
	Attempts    int              `json:"attempts"`
	LastAttempt time.Time        `json:"last_attempt"`
	// AbsentSince: the device has been missing from complete lists of its
	// location since then; the episode ends after remediation.forget_after.
	AbsentSince time.Time `json:"absent_since,omitzero"`
}

// Status returns a snapshot of the engine's state.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := Status{
		Enabled:   e.policy.Enabled,
		DryRun:    e.policy.DryRun,
		Trigger:   e.policy.Trigger,
		Paused:    e.pause.Paused,
		Storms:    []StormStatus{},
		InFlight:  []CommandStatus{},
		Exhausted: []EpisodeStatus{},
		Decisions: make([]Decision, 0, e.ringLen),
	}
	if e.pause.Paused {
		since := e.pause.Since
		s.PausedReason, s.PausedSince = e.pause.Reason, &since
	}
	stormStatus := func(scope string, st *storm) StormStatus {
		ss := StormStatus{Scope: scope, Since: st.Since, Ratio: st.Last.Ratio()}
		if !st.BelowSince.IsZero() {
			b := st.BelowSince
			ss.BelowSince = &b
		}
		return ss
	}
	if e.fleetStorm != nil {
		s.Storms = append(s.Storms, stormStatus(fleetScope, e.fleetStorm))
	}
	locs := make([]StormStatus, 0, len(e.storms))
	for id, st := range e.storms {
		locs = append(locs, stormStatus(id, st))
	}
	slices.SortFunc(locs, func(a, b StormStatus) int { return strings.Compare(a.Scope, b.Scope) })
	s.Storms = append(s.Storms, locs...)
	for _, c := range e.inflight {
		r := &c.rec
		s.InFlight = append(s.InFlight, CommandStatus{DeviceID: r.DeviceID, Alias: r.Alias, LocationID: r.LocationID,
			Fault: r.Fault, Attempt: r.Attempt, PowerCycle: r.PowerCycle, SentAt: r.SentAt, CommandID: r.CommandID, State: r.Phase})
	}
	slices.SortFunc(s.InFlight, func(a, b CommandStatus) int {
		return cmp.Or(a.SentAt.Compare(b.SentAt), strings.Compare(a.DeviceID, b.DeviceID))
	})
	for _, ep := range e.exhaustedLocked() {
		// The ledger record and the API type are separate types on purpose
		// (one is the on-disk schema, the other the JSON API); while their
		// fields agree a conversion maps one onto the other, and it stops
		// compiling the day they diverge.
		s.Exhausted = append(s.Exhausted, EpisodeStatus(*ep))
	}
	slices.SortFunc(s.Exhausted, func(a, b EpisodeStatus) int {
		return cmp.Or(strings.Compare(a.DeviceID, b.DeviceID), strings.Compare(string(a.Fault), string(b.Fault)))
	})
	for i := range e.ringLen {
		s.Decisions = append(s.Decisions, e.ring[(e.ringNext-1-i+2*ringSize)%ringSize])
	}
	return s
}

// API routes served by APIHandler.
const (
	RouteStatus = "/api/v1/remediation"
	RoutePause  = "/api/v1/remediation/pause"
	RouteResume = "/api/v1/remediation/resume"
)

// maxReasonBytes bounds a pause/resume reason: it is logged and persisted.
const maxReasonBytes = 1024

// APIHandler serves GET /api/v1/remediation (Status as JSON) and POST
// /api/v1/remediation/pause and /resume, which need a reason: a JSON body
// {"reason": "..."} or a form field reason. It answers 400 without a
// reason and 405 for a wrong method. Mount it only where the admin API is
// enabled, behind web.AdminGuard (which refuses form posts and cross-origin
// browser requests): pause and resume change what fleetd does to the fleet.
func (e *Engine) APIHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+RouteStatus, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, e.Status())
	})
	mux.HandleFunc("POST "+RoutePause, func(w http.ResponseWriter, r *http.Request) {
		e.servePauseResume(w, r, e.Pause)
	})
	mux.HandleFunc("POST "+RouteResume, func(w http.ResponseWriter, r *http.Request) {
		e.servePauseResume(w, r, e.Resume)
	})
	return mux
}

func (e *Engine) servePauseResume(w http.ResponseWriter, r *http.Request, act func(string) error) {
	reason, err := readReason(w, r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	if err := act(reason); err != nil {
		e.log.Error("remediation pause/resume failed", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "could not record the change in the ledger"})
		return
	}
	writeJSON(w, http.StatusOK, e.Status())
}

func readReason(w http.ResponseWriter, r *http.Request) (string, error) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	var reason string
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/json":
		var body struct {
			Reason string `json:"reason"`
		}
		dec := json.NewDecoder(r.Body)
		if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			return "", errors.New(`body must be JSON {"reason": "..."}`)
		}
		reason = body.Reason
	default:
		if err := r.ParseForm(); err != nil {
			return "", errors.New("unreadable form body")
		}
		reason = r.PostForm.Get("reason")
	}
	reason = strings.TrimSpace(reason)
	switch {
	case reason == "":
		return "", errors.New("a reason is required")
	case len(reason) > maxReasonBytes:
		return "", errors.New("reason too long")
	}
	return reason, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
