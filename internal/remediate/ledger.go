package remediate

import (
	"context"

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
