package remediate

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/remediate/store"
)

// Fleet-wide backoff after a throttled POST: the vendor throttles the
// account, so one 429 holds back every send. A Retry-After is honoured up
// to the cap; without one the wait doubles from the base per consecutive
// throttled POST, with jitter.
const (
	throttleBaseBackoff = 5 * time.Second
	throttleMaxBackoff  = 10 * time.Minute
)

// throttledCode reports whether an error code says the vendor throttled
// the request and created nothing (NOTES.md: the per-device command
// throttle answers ERRORS.LOCK_COMMAND_THROTTLED).
func throttledCode(code string) bool { return code == "ERRORS.LOCK_COMMAND_THROTTLED" }

// throttled reports whether a POST's error proves the vendor throttled it
// without creating a command, and the Retry-After it carried (0: none).
func throttled(err error) (time.Duration, bool) {
	var rl *bikeep.RateLimitError
	if errors.As(err, &rl) {
		return rl.RetryAfter, true
	}
	var ambiguous *bikeep.AmbiguousSendError
	if errors.As(err, &ambiguous) {
		return 0, false
	}
	var apiErr *bikeep.APIError
	return 0, errors.As(err, &apiErr) && throttledCode(apiErr.ErrorCode)
}

// throttleBackoff is the wait after the n-th consecutive throttled POST:
// Retry-After when given, else base·2^(n-1) with "equal jitter" (a random
// point in the upper half), both capped.
func throttleBackoff(n int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, throttleMaxBackoff)
	}
	d := throttleBaseBackoff
	for i := 1; i < n && d < throttleMaxBackoff; i++ {
		d *= 2
	}
	d = min(d, throttleMaxBackoff)
	half := d / 2
	return half + rand.N(d-half+1)
}

// throttledLocked handles a POST the vendor throttled: it is not an
// attempt, so the write-ahead is undone (attempt, cooldown, in-flight
// entry), and every send backs off.
func (e *Engine) throttledLocked(c *command, apiErr *bikeep.APIError, retryAfter time.Duration, now time.Time) {
	e.throttles++
	wait := throttleBackoff(e.throttles, retryAfter)
	if until := now.Add(wait); until.After(e.backoffUntil) {
		e.backoffUntil = until
	}
	c.rec.CorrelationID = apiErr.CorrelationID
	attrs := append(commandAttrs(&c.rec), slog.String("error_code", apiErr.ErrorCode), slog.Int("status", apiErr.StatusCode),
		slog.Duration("retry_after", retryAfter), slog.Time("backoff_until", e.backoffUntil))
	if err := e.unsendLocked(c); err != nil {
		// The write-ahead stays on disk; keep memory as cautious: the device
		// waits out its cooldown as after an ambiguous send.
		c.rec.Phase = phaseUnknown
		e.log.Error("remediation ledger update failed; throttled attempt stays counted", "err", err)
	}
	e.m.skip(ReasonThrottled)
	e.updateRingLocked(c.seq, func(d *Decision) {
		d.Outcome, d.Reason, d.Attempt, d.PowerCycle = OutcomeSkipped, ReasonThrottled, d.Attempt-1, false
		d.CorrelationID = apiErr.CorrelationID
	})
	e.log.LogAttrs(e.ctx, slog.LevelWarn, "remediation command throttled by the vendor; not an attempt, backing off", attrs...)
}

// unsendLocked gives back what sendLocked recorded for c — the episode's
// attempt, the device's last send, the command — unless something newer
// replaced them meanwhile.
func (e *Engine) unsendLocked(c *command) error {
	id, fk := c.rec.DeviceID, faultKey{c.rec.DeviceID, c.rec.Fault}
	ops := []store.Op{store.DeleteCommand(c.key)}
	ep := e.episodes[fk]
	ownEp := ep != nil && ep.Attempts == c.rec.Attempt && ep.FirstSeen.Equal(c.rec.FirstSeen)
	var prev episodeRecord
	if ownEp {
		prev = *ep
		prev.Attempts, prev.LastAttempt = prev.Attempts-1, c.prevAttempt
		if prev.Attempts == 0 {
			ops = append(ops, store.DeleteEpisode(prev.Key()))
		} else {
			ops = append(ops, store.PutEpisode(prev))
		}
	}
	last, ok := e.devices[id]
	ownSend := ok && last.Equal(c.rec.SentAt)
	if ownSend {
		if c.prevSend.IsZero() {
			ops = append(ops, store.DeleteDevice(id))
		} else {
			ops = append(ops, store.PutDevice(deviceRecord{DeviceID: id, LastSend: c.prevSend}))
		}
	}
	if err := e.write(ops...); err != nil {
		return err
	}
	delete(e.commands, c.key)
	if e.inflight[id] == c {
		delete(e.inflight, id)
	}
	switch {
	case ownEp && prev.Attempts == 0:
		delete(e.episodes, fk)
	case ownEp:
		e.episodes[fk] = &prev
	}
	switch {
	case ownSend && c.prevSend.IsZero():
		delete(e.devices, id)
	case ownSend:
		e.devices[id] = c.prevSend
	}
	return nil
}
