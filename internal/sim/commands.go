package sim

import (
	"slices"
	"strings"
	"time"
)

// command is a device command and its lifecycle
// NOT_SENT → SENT → RECEIVED → SUCCESS | ERROR.
type command struct {
	id, name   string
	dev        *device
	base       string // URI base of the request that created it
	state      commandState
	reason     string
	created    time.Time
	timeoutAt  time.Time
	powerCycle bool
	blocked    bool // has waited in SENT for an unreachable device
	events     []event
}

type event struct {
	name, value string
	at          time.Time
}

func (c *command) addEvent(name, value string, at time.Time) {
	c.events = append(c.events, event{name: name, value: value, at: at})
}

// newCommand records an accepted command. Callers hold mu.
func (s *Sim) newCommand(d *device, req wireCommandRequest, base string, now time.Time) *command {
	c := &command{
		id:         genUUID(s.idRng),
		name:       req.Command,
		dev:        d,
		base:       base,
		state:      cmdStateNotSent,
		created:    now,
		timeoutAt:  now.Add(s.opts.CommandTimeout),
		powerCycle: req.PowerCycle && req.Command == cmdSyncDevice,
	}
	c.addEvent("REQUEST_"+eventName(c.name), "", now)
	s.commands[c.id] = c
	s.cmdOrder = append(s.cmdOrder, c)
	s.pruneCommands(now)
	s.active = append(s.active, c)
	m := s.cmdCounts[d.id]
	if m == nil {
		m = map[string]int64{}
		s.cmdCounts[d.id] = m
	}
	m[c.name]++
	if c.powerCycle {
		s.powerCycles[d.id]++
	}
	if c.name == cmdLock || c.name == cmdUnlock {
		d.lastLockCmd = now
	}
	return c
}

// maxCommands bounds the commands kept for GET /device/v1/commands/{id}.
const maxCommands = 20000

// pruneCommands forgets the oldest finished commands beyond maxCommands, so
// a long-running demo does not grow without bound.
func (s *Sim) pruneCommands(now time.Time) {
	drop := 0
	for len(s.cmdOrder)-drop > maxCommands {
		c := s.cmdOrder[drop]
		if !c.state.terminal() && now.Before(c.timeoutAt) {
			break
		}
		delete(s.commands, c.id)
		drop++
	}
	if drop > 0 {
		clear(s.cmdOrder[:drop])
		s.cmdOrder = s.cmdOrder[drop:]
	}
}

// eventName turns a command name into an event suffix: sync-device → SYNC_DEVICE.
func eventName(cmd string) string { return strings.ToUpper(strings.ReplaceAll(cmd, "-", "_")) }

// advanceCommands moves every active command as far as now allows. The
// transitions happen at fixed offsets from creation (one CommandStepDelay
// each), so the outcome does not depend on how often Step is called.
func (s *Sim) advanceCommands(now time.Time) {
	if len(s.active) == 0 {
		return
	}
	kept := s.active[:0]
	for _, c := range s.active {
		s.advance(c, now)
		if !c.state.terminal() {
			kept = append(kept, c)
		}
	}
	clear(s.active[len(kept):])
	s.active = kept
}

func (s *Sim) advance(c *command, now time.Time) {
	step := s.opts.CommandStepDelay
	for {
		switch c.state {
		case cmdStateNotSent:
			at := c.created.Add(step)
			if now.Before(at) {
				return
			}
			c.state = cmdStateSent
			c.addEvent("REQUEST_SENT", "", at)
		case cmdStateSent:
			at := c.created.Add(2 * step)
			if !deviceReachable(c.dev, c.name) {
				// Dead or unreachable devices never answer: the command
				// stays SENT until it times out.
				c.blocked = true
				if !now.Before(c.timeoutAt) {
					c.state, c.reason = cmdStateError, "timeout"
					c.addEvent("REQUEST_TIMEOUT", "", c.timeoutAt)
				}
				return
			}
			if now.Before(at) {
				return
			}
			if c.blocked {
				at = now
			}
			c.state = cmdStateReceived
			c.addEvent("RESPONSE_ACK", "", at)
			s.onReceived(c, at)
		case cmdStateReceived:
			at := c.created.Add(3 * step)
			if c.blocked {
				at = now
			}
			if now.Before(at) {
				return
			}
			s.finish(c, at)
			return
		default:
			return
		}
	}
}

// onReceived starts the device side of a command.
func (s *Sim) onReceived(c *command, at time.Time) {
	d := c.dev
	if d.isDoor() || d.faults.has(FaultHardwareError) || d.faults.has(FaultDisabled) {
		return
	}
	switch c.name {
	case cmdLock, cmdForceLock:
		d.state, d.stateChangedAt, d.stateTimeoutAt = stateLocking, at, c.timeoutAt
		s.touch(d, at)
	case cmdUnlock, cmdForceUnlock:
		d.state, d.stateChangedAt, d.stateTimeoutAt = stateUnlocking, at, c.timeoutAt
		s.touch(d, at)
	}
}

// finish ends a received command with its effect on the device.
func (s *Sim) finish(c *command, at time.Time) {
	d := c.dev
	ok := func(name, value string) {
		c.state = cmdStateSuccess
		c.addEvent("RESPONSE_"+eventName(c.name), "OK", at)
		if name != "" {
			c.addEvent(name, value, at)
		}
	}
	fail := func(reason string) {
		c.state, c.reason = cmdStateError, reason
		c.addEvent("RESPONSE_"+eventName(c.name), "ERROR", at)
	}
	if c.name == cmdSyncDevice {
		s.finishSync(c, at)
		return
	}
	if c.name == cmdTakePhoto {
		ok("RESPONSE_PHOTO", c.base+"/device/v1/photos/"+c.id+".jpg")
		return
	}
	switch {
	case d.faults.has(FaultDisabled):
		s.restoreSettled(d, at)
		fail("DEVICE_DISABLED")
		return
	case d.faults.has(FaultHardwareError):
		s.restoreSettled(d, at)
		fail("HARDWARE_ERROR")
		return
	}
	switch c.name {
	case cmdLock, cmdForceLock:
		s.settle(d, stateLocked, lockLocked, at)
		ok("STATE_LOCKED", string(lockLocked))
	case cmdUnlock, cmdForceUnlock:
		if d.isDoor() {
			// The door opens for a moment and locks itself again: its
			// state and lock stay LOCKED/LOCKED.
			ok("STATE_DOOR_OPENED", "")
			return
		}
		s.settle(d, stateUnlocked, lockUnlocked, at)
		ok("STATE_UNLOCKED", string(lockUnlocked))
	case cmdBook:
		if d.state != stateUnlocked {
			fail("DEVICE_NOT_AVAILABLE")
			return
		}
		s.settle(d, stateBooked, d.lock, at)
		ok("STATE_BOOKED", "")
	case cmdCancelBooking, cmdForceCancelBooking:
		if d.state != stateBooked {
			if c.name == cmdCancelBooking {
				fail("NO_ACTIVE_BOOKING")
				return
			}
			ok("", "")
			return
		}
		s.settle(d, stateUnlocked, d.lock, at)
		ok("STATE_UNLOCKED", "")
	default:
		ok("", "")
	}
}

// settle sets d's resting state after a command; a rental bike's rental
// follows (the rider paused or resumed).
func (s *Sim) settle(d *device, st stateValue, lock lockState, at time.Time) {
	d.state, d.lock, d.stateChangedAt, d.stateTimeoutAt = st, lock, at, time.Time{}
	if st == stateUnlocked {
		d.userID, d.userKey = "", ""
	}
	if b := d.bike; b != nil && b.rental != nil {
		if lock == lockLocked {
			b.rental.lock = copriLocked
		} else {
			b.rental.lock = copriUnlocked
		}
		b.rental.endTime = at
		b.lock = b.rental.lock
	}
	s.touch(d, at)
}

// restoreSettled undoes a transition onReceived started.
func (s *Sim) restoreSettled(d *device, at time.Time) {
	switch d.state {
	case stateLocking:
		d.state = stateUnlocked
	case stateUnlocking:
		d.state = stateLocked
	default:
		return
	}
	d.stateTimeoutAt = time.Time{}
	s.touch(d, at)
}

// finishSync completes a sync-device: it cures the device's recoverable
// faults with probability SyncCureProbability (certainly, for
// hardware_error and not_responding, with power_cycle). A stubborn device
// (SetStubborn) is never cured: the command succeeds, the fault stays.
func (s *Sim) finishSync(c *command, at time.Time) {
	d := c.dev
	d.syncs++
	c.state = cmdStateSuccess
	if c.powerCycle {
		c.addEvent("RESPONSE_POWER_CYCLE", "OK", at)
	}
	c.addEvent("RESPONSE_SYNC_DEVICE", "OK", at)
	rec := d.faults.recoverable()
	if rec == 0 {
		return
	}
	if d.stubborn {
		return
	}
	var cure faultSet
	if s.cureRoll(d) < s.opts.SyncCureProbability {
		cure = rec
	}
	if c.powerCycle {
		cure |= rec & (FaultHardwareError.bit() | FaultNotResponding.bit())
	}
	if cure == 0 {
		return
	}
	if cure.has(FaultUnhealthy) {
		c.addEvent("STATE_HEALTH", string(healthHealthy), at)
	}
	if cure.has(FaultHardwareError) || cure.has(FaultNotResponding) {
		c.addEvent("STATE_HARDWARE_STATE", string(hwNormal), at)
	}
	if cure.has(FaultStuckTransition) || cure.has(FaultLockMismatch) || cure.has(FaultRentalLockMismatch) {
		c.addEvent("STATE_LOCK_STATE", string(d.lock), at)
	}
	s.clearFaults(d, cure, at, "cured by sync-device")
}

// wire renders c for the API.
func (c *command) wire(base string) wireCommand {
	w := wireCommand{
		Name:   c.name,
		ID:     c.id,
		State:  wireCommandState{Reason: c.reason, Value: string(c.state)},
		URI:    base + "/device/v1/commands/" + c.id,
		Device: wireRef{ID: c.dev.id, URI: base + "/device/v1/devices/" + c.dev.id},
		Events: make([]wireEvent, 0, len(c.events)),
	}
	if !c.state.terminal() {
		w.State.TimeoutAt = ts(c.timeoutAt)
	}
	for _, e := range c.events {
		w.Events = append(w.Events, wireEvent{Name: e.name, Value: e.value, Timestamp: ts(e.at)})
	}
	return w
}

// throttleWindow is the shared lock/unlock throttle of a device (NOTES.md).
func throttleWindow(p powerSave) time.Duration {
	if p == powerNone || p == "" {
		return 3 * time.Second
	}
	return 15 * time.Second
}

// commandsOf lists d's commands, sorted (for messages).
func commandsOf(d *device) string { return strings.Join(slices.Clone(d.commands), ", ") }
