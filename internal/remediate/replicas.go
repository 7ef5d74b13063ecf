package remediate

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/fleetd/fleetd/internal/cluster"
	"github.com/fleetd/fleetd/internal/remediate/store"
)

// Several replicas share one PostgreSQL ledger and split the locations by
// slot leases (package cluster). Each engine keeps in memory only the
// records of the locations its replica owns: another replica's episodes
// must not be judged on a snapshot that does not hold their location (it
// would count them absent and forget them), nor its commands polled twice.
// The ledger stays the truth: Reserve re-checks every shared gate and is
// fenced by the slot lease, so a stale memory can skip, never double-send.

// PauseReader is implemented by a ledger shared by replicas: the pause set
// through the admin API of any replica holds for all, so it is read again
// before every pass.
type PauseReader interface {
	LoadPause(ctx context.Context) (store.Pause, error)
}

// owned reports whether this engine remediates the location (always, for a
// single replica).
func (e *Engine) owned(locationID string) bool {
	return e.owns == nil || e.owns(locationID)
}

// dropUnownedLocked forgets the records of locations this replica no
// longer owns. Commands it is still sending or polling run to their end —
// their outcome is recorded in the ledger for the new owner — and are
// dropped by a later call once done.
func (e *Engine) dropUnownedLocked() {
	if e.owns == nil {
		return
	}
	for k, ep := range e.episodes {
		if !e.owned(ep.LocationID) {
			delete(e.episodes, k)
		}
	}
	for key, c := range e.commands {
		if e.owned(c.rec.LocationID) || c.rec.Phase == phaseSending || (c.polling && c.rec.Phase == phasePolling) {
			continue
		}
		delete(e.commands, key)
		if e.inflight[c.rec.DeviceID] == c {
			delete(e.inflight, c.rec.DeviceID)
		}
	}
}

// Resync brings the engine's memory in line with the locations its replica
// now owns: records of locations given up are forgotten, and those of
// locations taken over are read from the ledger — the previous owner's
// episodes, last sends and in-flight commands. Commands that were being
// polled are polled to their end here; one caught mid-send (its owner died
// between the write-ahead record and the answer) has an unknown outcome and
// blocks its device until the cooldown after its send. Call it whenever
// the set of owned slots changes.
func (e *Engine) Resync(ctx context.Context) error {
	if e.owns == nil {
		return nil
	}
	// Read under the lock, like every ledger write: a record the engine
	// writes meanwhile must not be overwritten by an older copy.
	e.mu.Lock()
	defer e.mu.Unlock()
	st, err := e.ledger.Load(ctx)
	if err != nil {
		return fmt.Errorf("remediate: resync from ledger: %w", err)
	}
	e.dropUnownedLocked()
	for i := range st.Episodes {
		r := st.Episodes[i]
		k := faultKey{r.DeviceID, r.Fault}
		if !e.owned(r.LocationID) {
			continue
		}
		// The ledger's count is the truth; one record per (device, fault)
		// is the ledger's contract.
		e.episodes[k] = &r
	}
	for _, d := range st.Devices {
		if d.LastSend.After(e.devices[d.DeviceID]) {
			e.devices[d.DeviceID] = d.LastSend
		}
	}
	adopted, polled := 0, 0
	var heal []store.Op
	for _, r := range st.Commands {
		if !e.owned(r.LocationID) {
			continue
		}
		key := r.Key()
		if c := e.commands[key]; c != nil {
			if c.rec.Phase != r.Phase && (c.rec.Phase == phaseDone || c.rec.Phase == phaseUnknown) {
				// This engine's last write of the command did not reach the
				// ledger (the connection broke): write it again, or the
				// ledger would hold the device in flight for good.
				heal = append(heal, store.PutCommand(c.rec))
			}
			continue // ours: in progress, or already known
		}
		if r.Phase == phaseSending {
			r.Phase = phaseUnknown
		}
		c := &command{rec: r, key: key}
		e.commands[key] = c
		if r.InFlight() {
			e.inflight[r.DeviceID] = c
		} else if e.inflight[r.DeviceID] != nil && e.inflight[r.DeviceID].key == key {
			delete(e.inflight, r.DeviceID)
		}
		adopted++
		if r.Phase == phasePolling && e.running && e.startPollLocked(c) {
			polled++
		}
	}
	if adopted > 0 {
		e.log.Info("remediation state taken over for the locations now owned", "commands", adopted, "polling", polled)
	}
	if err := e.write(heal...); err != nil {
		return fmt.Errorf("remediate: resync: rewrite commands the ledger missed: %w", err)
	}
	return nil
}

// refreshPause reads the shared pause, if the ledger is shared. On error
// the last known pause stays; Reserve fails too while the ledger is away.
func (e *Engine) refreshPause(ctx context.Context) {
	pr, ok := e.ledger.(PauseReader)
	if !ok || e.owns == nil {
		return
	}
	p, err := pr.LoadPause(ctx)
	if err != nil {
		e.log.Warn("reading the shared remediation pause failed; keeping the last known", "err", err)
		return
	}
	e.mu.Lock()
	if p != e.pause {
		e.log.Info("remediation pause changed by another replica", "paused", p.Paused, "reason", p.Reason)
		e.pause = p
	}
	e.mu.Unlock()
}

// FleetCounter shares the fleet-wide storm ratio among replicas: each
// publishes the devices and faulty devices of the Up locations it walked
// and gets back the fleet's totals (package cluster, FleetCounts).
type FleetCounter interface {
	FleetCounts(ctx context.Context, perLocation map[string]cluster.Count) (cluster.Count, error)
}

// fleetCountsLocked returns the fleet's devices and faulty devices for the
// fleet-wide storm brake: the shared totals with a FleetCounter, else (or
// when the database cannot be reached) this engine's own.
func (e *Engine) fleetCountsLocked(ctx context.Context, local cluster.Count) cluster.Count {
	if e.fleet == nil {
		return local
	}
	total, err := e.fleet.FleetCounts(ctx, e.locCounts)
	if err != nil {
		e.log.Warn("fleet-wide fault counts unavailable; the storm brake measures this replica's locations", "err", err)
		return local
	}
	return total
}

// maySendLocked is the last check before a POST, with several replicas:
// the attempt was recorded under a valid slot lease, but a replica frozen
// between that commit and the POST (GC, SIGSTOP, a stalled VM), or one that
// gave the slot up meanwhile to balance the slots, may no longer hold the
// lease. Then nothing is sent: no command exists, so its record goes and
// the attempt is given back (store.Refund) — an attempt that never left
// must not use up the episode, or the device would get fewer commands than
// max_attempts for good. The cooldown stays counted.
func (e *Engine) maySendLocked(c *command) bool {
	if e.maySend == nil || e.maySend(c.rec.LocationID) {
		return true
	}
	delete(e.commands, c.key)
	if e.inflight[c.rec.DeviceID] == c {
		delete(e.inflight, c.rec.DeviceID)
	}
	// The ledger's record of what happened must not be dropped because
	// shutdown has begun (like e.write).
	refunded, err := e.ledger.Refund(context.WithoutCancel(e.ctx), c.rec, c.prevAttempt)
	if err != nil {
		e.log.Error("remediation ledger update failed; the attempt not sent stays counted", "err", err)
	}
	if fk := (faultKey{c.rec.DeviceID, c.rec.Fault}); refunded {
		// Memory follows the ledger (store.Refund); a resync corrects
		// anything else.
		if ep := e.episodes[fk]; ep != nil && ep.Attempts >= c.rec.Attempt && ep.FirstSeen.Equal(c.rec.FirstSeen) {
			if ep.Attempts == c.rec.Attempt && ep.LastAttempt.Equal(c.rec.SentAt) {
				ep.LastAttempt = c.prevAttempt
			}
			ep.Attempts--
			if ep.Attempts == 0 {
				delete(e.episodes, fk)
			}
		}
	}
	e.updateRingLocked(c.seq, func(d *Decision) { d.Result = "not_sent" })
	e.log.LogAttrs(e.ctx, slog.LevelWarn, "remediation command not sent: the slot lease was lost before the POST",
		append(commandAttrs(&c.rec), slog.Bool("attempt_given_back", refunded))...)
	return false
}
