package remediate

import (
	"context"
	"fmt"

	"github.com/fleetd/fleetd/internal/remediate/store"
)

// OpenLedger opens the embedded ledger, a bbolt file at path (see
// store.OpenBolt: only a missing file is created).
func OpenLedger(path string) (*store.Bolt, error) { return store.OpenBolt(path) }

// The engine keeps the ledger's records in memory as they are stored.
type (
	pauseRecord   = store.Pause
	episodeRecord = store.Episode
	deviceRecord  = store.Device
	commandRecord = store.Command
	stormRecord   = store.Storm
)

// Command phases as stored in the ledger.
const (
	phaseSending = store.PhaseSending
	phasePolling = store.PhasePolling
	phaseUnknown = store.PhaseUnknown
	phaseDone    = store.PhaseDone
)

// write makes ops durable. The record of what already happened must not be
// dropped because shutdown has begun, so it outlives the engine's context.
func (e *Engine) write(ops ...store.Op) error {
	if len(ops) == 0 {
		return nil // most passes change nothing: not even a context to build
	}
	return e.ledger.Apply(context.WithoutCancel(e.ctx), ops...)
}

// restore loads the ledger's state into the engine's memory.
func (e *Engine) restore(st store.State) error {
	e.pause = st.Pause
	for _, s := range st.Storms {
		if s.Scope == fleetScope {
			e.fleetStorm = &storm{Since: s.Since}
		} else if id, ok := store.ScopeLocation(s.Scope); ok {
			e.storms[id] = &storm{Since: s.Since}
		}
	}
	var merge []store.Op
	e.episodes, merge = indexEpisodes(st.Episodes)
	if err := e.ledger.Apply(context.Background(), merge...); err != nil {
		return fmt.Errorf("remediate: merge episodes: %w", err)
	}
	for _, d := range st.Devices {
		e.devices[d.DeviceID] = d.LastSend
	}
	for _, r := range st.Commands {
		if r.Phase == phaseSending {
			// fleetd died between the write-ahead record and the POST's
			// answer: the command may exist. Never re-send; block the device.
			r.Phase = phaseUnknown
		}
		c := &command{rec: r, key: r.Key()}
		e.commands[c.key] = c
		if r.InFlight() {
			e.inflight[r.DeviceID] = c
		}
	}
	if len(e.commands) > 0 || len(e.episodes) > 0 || e.pause.Paused {
		e.log.Info("remediation state loaded from ledger", "ledger", e.ledger.String(),
			"paused", e.pause.Paused, "episodes", len(e.episodes), "commands", len(e.commands),
			"in_flight", len(e.inflight), "storms", len(e.storms)+btoi(e.fleetStorm != nil))
	}
	return nil
}
