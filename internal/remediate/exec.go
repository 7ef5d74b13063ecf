package remediate

import (
	"errors"
	"log/slog"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/clients/limits"
	"github.com/fleetd/fleetd/internal/remediate/store"
)

// send POSTs one sync-device, exactly once, and records what came of it.
// It runs in its own goroutine so a slow vendor never blocks a decision pass.
func (e *Engine) send(c *command) {
	e.mu.Lock()
	deviceID, req := c.rec.DeviceID, bikeep.CommandRequest{Command: bikeep.CmdSyncDevice, PowerCycle: c.rec.PowerCycle}
	if !e.maySendLocked(c) {
		e.mu.Unlock()
		return
	}
	e.mu.Unlock()

	cmd, err := e.cmd.SendCommand(e.ctx, deviceID, req)
	now := e.now()

	e.mu.Lock()
	defer e.mu.Unlock()
	var (
		apiErr    *bikeep.APIError
		ambiguous *bikeep.AmbiguousSendError
	)
	refused := err != nil && !errors.As(err, &ambiguous) && errors.As(err, &apiErr)
	if refused || (err == nil && cmd != nil && cmd.ID != "") {
		if retryAfter, ok := throttled(err); ok {
			e.throttledLocked(c, apiErr, retryAfter, now)
			return
		}
		e.throttles = 0 // the vendor answered without throttling
	}
	switch {
	case err == nil && cmd != nil && cmd.ID != "":
		e.noteStateLocked(c, cmd.State.Value)
		c.rec.Phase, c.rec.CommandID, c.rec.TimeoutAt = phasePolling, cmd.ID, cmd.State.TimeoutAt.Time
		e.persistLocked(c)
		e.updateRingLocked(c.seq, func(d *Decision) { d.CommandID = cmd.ID })
		e.log.LogAttrs(e.ctx, slog.LevelInfo, "remediation command sent", commandAttrs(&c.rec)...)
		switch cmd.State.Value {
		case bikeep.CommandSuccess:
			e.finishLocked(c, ResultSuccess, now)
		case bikeep.CommandError:
			e.finishLocked(c, ResultError, now)
		default:
			if !e.startPollLocked(c) {
				e.log.Info("remediation shutting down; command stays in the ledger and is polled after restart", "command_id", cmd.ID)
			}
		}

	case refused:
		// The vendor answered with a refusal: no command exists. The attempt
		// and the cooldown stay counted; the device is free again.
		c.rec.Result, c.rec.CorrelationID = ResultSendFailed, apiErr.CorrelationID
		delete(e.commands, c.key)
		if e.inflight[c.rec.DeviceID] == c {
			delete(e.inflight, c.rec.DeviceID)
		}
		if lerr := e.write(store.DeleteCommand(c.key)); lerr != nil {
			e.log.Error("remediation ledger update failed", "err", lerr)
		}
		e.m.commands.WithLabelValues(string(c.rec.Fault), ResultSendFailed).Inc()
		e.updateRingLocked(c.seq, func(d *Decision) { d.Result, d.CorrelationID = ResultSendFailed, apiErr.CorrelationID })
		e.log.LogAttrs(e.ctx, slog.LevelWarn, "remediation command refused by the vendor",
			append(commandAttrs(&c.rec), slog.String("error_code", apiErr.ErrorCode), slog.Int("status", apiErr.StatusCode))...)

	default:
		// The command may or may not exist (timeout, dropped connection,
		// 5xx, shutdown mid-POST …). Never re-send: the device stays blocked
		// as in flight until its cooldown has passed.
		if err == nil {
			err = errors.New("answer without a command id")
		}
		c.rec.Phase, c.rec.Result = phaseUnknown, ResultSendFailed
		e.persistLocked(c)
		e.m.commands.WithLabelValues(string(c.rec.Fault), ResultSendFailed).Inc()
		e.updateRingLocked(c.seq, func(d *Decision) { d.Result = ResultSendFailed })
		e.log.LogAttrs(e.ctx, slog.LevelWarn, "remediation command outcome unknown; device blocked until its cooldown has passed",
			append(commandAttrs(&c.rec), slog.String("err", err.Error()))...)
	}
}

// persistLocked writes a command record; a failure is logged, and the
// in-memory state (which is at least as cautious) goes on.
func (e *Engine) persistLocked(c *command) {
	if err := e.write(store.PutCommand(c.rec)); err != nil {
		e.log.Error("remediation ledger update failed", "err", err)
	}
}

// startPollLocked starts the one poller of c; a command already being
// polled (Run resuming while a fresh send's poller runs) is left alone.
func (e *Engine) startPollLocked(c *command) bool {
	if c.polling {
		return true
	}
	c.polling = e.goLocked(func() { e.poll(c) })
	return c.polling
}

// poll follows a command until SUCCESS, ERROR, its timeout_at, or
// command_timeout since it was sent. Transient errors keep polling until
// those limits; a 404 ends it as error. On shutdown it stops and leaves the
// command in flight in the ledger.
func (e *Engine) poll(c *command) {
	t := time.NewTicker(e.pollInterval)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
		e.mu.Lock()
		id := c.rec.CommandID
		e.mu.Unlock()

		got, err := e.cmd.GetCommand(e.ctx, id)
		now := e.now()

		e.mu.Lock()
		result := ""
		switch {
		case err == nil && got != nil:
			if !got.State.TimeoutAt.IsZero() && !got.State.TimeoutAt.Equal(c.rec.TimeoutAt) {
				c.rec.TimeoutAt = got.State.TimeoutAt.Time
			}
			e.noteStateLocked(c, got.State.Value)
			switch got.State.Value {
			case bikeep.CommandSuccess:
				result = ResultSuccess
			case bikeep.CommandError:
				result = ResultError
			}
		case bikeep.IsNotFound(err):
			result = ResultError
		case e.ctx.Err() != nil:
			e.mu.Unlock()
			return
		default:
			e.log.Debug("polling remediation command failed; will retry", "command_id", id, "err", err)
		}
		if result == "" {
			timeoutAt := c.rec.TimeoutAt
			if (!timeoutAt.IsZero() && now.After(timeoutAt)) ||
				(e.policy.CommandTimeout > 0 && now.Sub(c.rec.SentAt) >= e.policy.CommandTimeout) {
				result = ResultTimeout
				if c.odd {
					result = ResultUnknown
				}
			}
		}
		if result != "" {
			e.finishLocked(c, result, now)
			e.mu.Unlock()
			return
		}
		e.mu.Unlock()
	}
}

// finishLocked ends a command: it no longer blocks its device and awaits
// verification on a later walk.
func (e *Engine) finishLocked(c *command, result string, now time.Time) {
	c.rec.Phase, c.rec.Result, c.rec.EndedAt = phaseDone, result, now
	if e.inflight[c.rec.DeviceID] == c {
		delete(e.inflight, c.rec.DeviceID)
	}
	e.persistLocked(c)
	e.m.commands.WithLabelValues(string(c.rec.Fault), result).Inc()
	e.updateRingLocked(c.seq, func(d *Decision) { d.Result = result })
	level := slog.LevelInfo
	if result != ResultSuccess {
		level = slog.LevelWarn
	}
	e.log.LogAttrs(e.ctx, level, "remediation command finished", commandAttrs(&c.rec)...)
}

func commandAttrs(r *commandRecord) []slog.Attr {
	return []slog.Attr{
		slog.String("device_id", r.DeviceID), slog.String("alias", r.Alias),
		slog.String("location_id", r.LocationID), slog.String("fault", string(r.Fault)),
		slog.Int("attempt", r.Attempt), slog.Bool("power_cycle", r.PowerCycle),
		slog.String("command_id", r.CommandID), slog.String("phase", r.Phase),
		slog.String("result", r.Result), slog.String("correlation_id", r.CorrelationID),
	}
}

// maxStateBytes bounds an undocumented state value in a log line: it is
// vendor text.
const maxStateBytes = 64

// noteStateLocked remembers whether the latest state a command reported is
// undocumented, so that it ends as unknown rather than timeout, and logs
// the first such value of each command.
func (e *Engine) noteStateLocked(c *command, v bikeep.CommandStateValue) {
	c.odd = !v.Known()
	if !c.odd || c.oddLogged {
		return
	}
	c.oddLogged = true
	state, _ := limits.Text(string(v), maxStateBytes)
	e.log.LogAttrs(e.ctx, slog.LevelWarn, "remediation command reported an undocumented state",
		append(commandAttrs(&c.rec), slog.String("state", state))...)
}
