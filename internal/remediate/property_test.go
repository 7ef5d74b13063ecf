package remediate

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/remediate/store"
)

// chaosCommander answers POSTs and polls at random (seeded) and checks,
// from the vendor's side, that no command is sent to a device whose
// previous command may still be running, none inside a device's cooldown,
// and none while the engine should be backing off after a throttled POST.
type chaosCommander struct {
	mu       sync.Mutex
	rng      *rand.Rand
	clock    func() time.Time
	policy   config.Remediation
	n        int
	sends    []sendCall
	outcomes []string             // per send: ok, definite, ambiguous, throttled
	last     map[string]*chaosCmd // by device: the last POST that was an attempt
	byID     map[string]*chaosCmd
	posts    map[string]int // POSTs per device, throttled ones included
	// backoffs are the windows (from, until) after throttled POSTs in which
	// no POST may arrive; a restart forgets them (the backoff is not
	// persisted), so runProperty clears them.
	backoffs [][2]time.Time
	illegal  []string
}

type chaosCmd struct {
	device   string
	at       time.Time
	outcome  string // ok, definite, ambiguous
	terminal bool   // reported SUCCESS/ERROR to a poll
	hang     bool   // never finishes
	odd      bool   // polls often answer an undocumented state
}

func newChaosCommander(seed uint64, clock func() time.Time, p config.Remediation) *chaosCommander {
	return &chaosCommander{rng: rand.New(rand.NewPCG(seed, 7)), clock: clock, policy: p,
		last: map[string]*chaosCmd{}, byID: map[string]*chaosCmd{}, posts: map[string]int{}}
}

func (c *chaosCommander) SendCommand(_ context.Context, deviceID string, req bikeep.CommandRequest) (*bikeep.Command, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock()
	c.sends = append(c.sends, sendCall{deviceID, req, now})
	c.posts[deviceID]++
	c.checkLocked(deviceID, now)
	cmd := &chaosCmd{device: deviceID, at: now}
	switch r := c.rng.IntN(20); {
	case r < 2:
		cmd.outcome = "definite"
		c.last[deviceID], c.outcomes = cmd, append(c.outcomes, cmd.outcome)
		return nil, &bikeep.APIError{StatusCode: 409, ErrorCode: "ERRORS.CONFLICT"}
	case r < 4:
		cmd.outcome = "ambiguous"
		c.last[deviceID], c.outcomes = cmd, append(c.outcomes, cmd.outcome)
		return nil, &bikeep.AmbiguousSendError{DeviceID: deviceID, Err: context.DeadlineExceeded}
	case r < 6:
		return nil, c.throttleLocked(now)
	default:
		cmd.outcome, cmd.hang, cmd.odd = "ok", r == 19, r >= 16
		c.last[deviceID], c.outcomes = cmd, append(c.outcomes, cmd.outcome)
		c.n++
		id := fmt.Sprintf("c%d", c.n)
		c.byID[id] = cmd
		return &bikeep.Command{ID: id, State: bikeep.CommandState{Value: bikeep.CommandSent}}, nil
	}
}

// checkLocked records a POST that the engine must not have sent.
func (c *chaosCommander) checkLocked(deviceID string, now time.Time) {
	for _, w := range c.backoffs {
		if now.After(w[0]) && now.Before(w[1]) {
			c.illegal = append(c.illegal, fmt.Sprintf("%s: sent at %v, inside the backoff after the throttle at %v (until %v)", deviceID, now, w[0], w[1]))
		}
	}
	p := c.last[deviceID]
	if p == nil {
		return
	}
	free := p.outcome == "definite" || p.terminal ||
		(p.outcome == "ok" && now.Sub(p.at) >= c.policy.CommandTimeout) ||
		(p.outcome == "ambiguous" && now.Sub(p.at) >= c.policy.Cooldown)
	if !free {
		c.illegal = append(c.illegal, fmt.Sprintf("%s: sent at %v while the command of %v (%s) may still run", deviceID, now, p.at, p.outcome))
	}
	if now.Sub(p.at) < c.policy.Cooldown {
		c.illegal = append(c.illegal, fmt.Sprintf("%s: sent %v after the previous send (cooldown %v)", deviceID, now.Sub(p.at), c.policy.Cooldown))
	}
}

// throttleLocked answers a throttle: a 429 with or without Retry-After, or
// the documented throttle code. The engine must then wait at least the
// Retry-After, or the least its jittered backoff can be.
func (c *chaosCommander) throttleLocked(now time.Time) error {
	c.outcomes = append(c.outcomes, "throttled")
	var ra time.Duration
	if c.rng.IntN(2) == 0 {
		ra = time.Duration(1+c.rng.IntN(120)) * time.Second
	}
	wait := ra
	if wait == 0 {
		wait = throttleBaseBackoff / 2
	}
	c.backoffs = append(c.backoffs, [2]time.Time{now, now.Add(wait)})
	if ra == 0 && c.rng.IntN(2) == 0 {
		return &bikeep.APIError{StatusCode: 400, ErrorCode: "ERRORS.LOCK_COMMAND_THROTTLED", CorrelationID: "corr-t"}
	}
	return &bikeep.RateLimitError{APIError: bikeep.APIError{StatusCode: 429, CorrelationID: "corr-t"}, RetryAfter: ra}
}

func (c *chaosCommander) GetCommand(_ context.Context, id string) (*bikeep.Command, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cmd := c.byID[id]
	if cmd.terminal {
		return &bikeep.Command{ID: id, State: bikeep.CommandState{Value: bikeep.CommandSuccess}}, nil
	}
	if cmd.odd && c.rng.IntN(2) == 0 {
		return &bikeep.Command{ID: id, State: bikeep.CommandState{Value: "EXPLODED"}}, nil
	}
	if !cmd.hang && c.rng.IntN(20) == 0 {
		cmd.terminal = true
		v := bikeep.CommandSuccess
		if c.rng.IntN(3) == 0 {
			v = bikeep.CommandError
		}
		return &bikeep.Command{ID: id, State: bikeep.CommandState{Value: v}}, nil
	}
	return &bikeep.Command{ID: id, State: bikeep.CommandState{Value: bikeep.CommandReceived}}, nil
}

// TestPropertyRandomFaults drives the engine with random fault sequences,
// pauses, dry runs, outages, blackouts and vendor behaviour — list glitches
// (failed and partial lists, devices missing from complete lists), 429s,
// undocumented command states, and restarts that reopen the ledger — and
// checks the safety properties after every walk: never more than
// max_attempts POSTs per (device, fault) episode, never two commands in
// flight for one device.
func TestPropertyRandomFaults(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6}
	steps := 600
	if testing.Short() {
		seeds, steps = seeds[:2], 100
	}
	total := map[string]int{}
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			if err := runProperty(t, seed, steps, total, nil); err != "" {
				t.Fatalf("seed %d: %s", seed, err)
			}
		})
	}
	// The vendor's answers depend on the order of concurrent POSTs, so one
	// seed may see no throttle; all of them together must.
	t.Logf("all seeds: %v", total)
	for _, what := range []string{"throttled", "restarts", "exhausted", "hidden"} {
		if total[what] == 0 && !testing.Short() {
			t.Errorf("no run exercised %s", what)
		}
	}
}

type faultState struct {
	kind      health.FaultKind
	firstSeen time.Time
	walks     int
	// lost: the fault tracker lost the fault (device missing from a
	// complete list); it starts afresh when the device is seen again.
	lost bool
}

// chaosRun is one property run: the world, the engine under test and the
// ground truth the properties are checked against.
type chaosRun struct {
	t      *testing.T
	rng    *rand.Rand
	p      config.Remediation
	clock  *fakeClock
	cc     *chaosCommander
	f      *fleet
	faults map[string]*faultState // device → its one fault
	hidden map[string]int         // device → the step until which it is missing from its lists

	// open opens the ledger at every start: the bbolt file of p.Ledger, or
	// another Store (the PostgreSQL ledger).
	open   func() (store.Store, error)
	l      store.Store
	e      *Engine
	cancel context.CancelFunc
	done   chan error
	// since is the index of the first send of the current engine: the token
	// bucket starts full on every start.
	since    int
	restarts int
	// exhausted counts ground-truth episodes that used every attempt.
	exhausted int

	// Ground truth of DESIGN.md's episodes: attempt POSTs per (device,
	// fault) since the last evidence that ended it, and when each device
	// went missing from complete lists.
	attempts    map[faultKey]int
	absentSince map[string]time.Time
}

func (r *chaosRun) start() {
	var l store.Store
	var err error
	if r.open != nil {
		l, err = r.open()
	} else {
		l, err = OpenLedger(r.p.Ledger)
	}
	mustNil(r.t, err)
	e, err := New(Options{Policy: r.p, Commander: r.cc, Ledger: l, Now: r.clock.Now, PollInterval: time.Millisecond})
	mustNil(r.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	r.l, r.e, r.cancel, r.done = l, e, cancel, done
	r.since = len(r.cc.sendsCopy())
}

func (r *chaosRun) stop() {
	r.cancel()
	mustNil(r.t, <-r.done)
	mustNil(r.t, r.l.Close())
}

// restart is a fleetd restart: the engine stops, the ledger is reopened by
// a new engine, and the fault tracker starts empty (every fault gets a new
// first-seen time).
func (r *chaosRun) restart() {
	(&env{t: r.t, e: r.e}).quiet()
	r.stop()
	r.start()
	r.restarts++
	r.cc.mu.Lock()
	r.cc.backoffs = nil // the fleet-wide backoff is not persisted
	r.cc.mu.Unlock()
	for _, fs := range r.faults {
		fs.firstSeen, fs.walks = r.clock.Now(), 0
	}
}

// glitch picks each location's list for this walk: mostly complete, now
// and then failed or partial; and hides devices from their lists for a
// few or many walks.
func (r *chaosRun) glitch(step int) {
	for _, l := range r.f.locs {
		l.up, l.undecodable, l.hidden = true, 0, map[string]bool{}
		switch r.rng.IntN(15) {
		case 0:
			l.up = false
		case 1:
			l.undecodable = 1 + r.rng.IntN(2)
			for i := range l.devices {
				if r.rng.IntN(4) == 0 {
					l.hidden[l.devices[i].ID] = true
				}
			}
		}
		for i := range l.devices {
			id := l.devices[i].ID
			if r.rng.IntN(60) == 0 {
				r.hidden[id] = step + 1 + r.rng.IntN(40)
			}
			if r.hidden[id] > step {
				l.hidden[id] = true
			}
		}
	}
}

// listFaults builds the faults the scraper would report: a device missing
// from a partial list keeps its fault (old first-seen); one missing from a
// complete list loses it.
func (r *chaosRun) listFaults(now time.Time) {
	for _, l := range r.f.locs {
		l.faults = nil
		complete := l.up && l.undecodable == 0
		for i := range l.devices {
			id := l.devices[i].ID
			fs := r.faults[id]
			if fs == nil {
				continue
			}
			switch {
			case l.hidden[id] && complete:
				fs.lost = true
				continue
			case l.hidden[id] && l.up:
				// partial: the tracker keeps it as it was
			case l.up:
				if fs.lost {
					fs.firstSeen, fs.walks, fs.lost = now, 0, false
				}
				fs.walks++
			}
			flt := r.f.fault(l.id, i, fs.kind, fs.firstSeen, fs.walks)
			flt.Recoverable = fs.kind.RecoverableKind()
		}
	}
}

// observeTruth ends the ground-truth episodes the walk gives evidence for:
// a device in its Up location's list without the fault, or missing from
// complete lists for forget_after.
func (r *chaosRun) observeTruth(now time.Time) {
	for k := range r.attempts {
		l := r.f.loc(k.DeviceID[:2])
		fs := r.faults[k.DeviceID]
		switch {
		case !l.up:
		case !l.hidden[k.DeviceID]:
			delete(r.absentSince, k.DeviceID)
			if fs == nil || fs.kind != k.Fault {
				delete(r.attempts, k)
			}
		case l.undecodable > 0:
		case r.absentSince[k.DeviceID].IsZero():
			r.absentSince[k.DeviceID] = now
		case now.Sub(r.absentSince[k.DeviceID]) >= r.p.ForgetAfter:
			delete(r.attempts, k)
		}
	}
	for id := range r.absentSince {
		if l := r.f.loc(id[:2]); l.up && !l.hidden[id] {
			delete(r.absentSince, id)
		}
	}
}

func runProperty(t *testing.T, seed uint64, steps int, total map[string]int, open func() (store.Store, error)) string {
	rng := rand.New(rand.NewPCG(seed, 99))
	p := testPolicy(t.TempDir())
	p.MinFaultAge, p.Cooldown, p.MaxAttempts = time.Minute, 3*time.Minute, 3
	p.Rate, p.MaxInFlight, p.CommandTimeout = config.Rate{Count: 2, Per: time.Minute}, 3, 2*time.Minute
	p.Storm = config.Storm{MaxFaultyRatio: 0.3, MinDevices: 8, Cooldown: 5 * time.Minute}
	p.Exclude.Locations = []string{"L3"}
	p.Blackout = []config.Blackout{{Start: "0 * * * *", Duration: 5 * time.Minute, Timezone: "UTC"}}
	p.ForgetAfter = 15 * time.Minute
	clock := newClock()
	r := &chaosRun{t: t, rng: rng, p: p, clock: clock, cc: newChaosCommander(seed, clock.Now, p),
		f: newFleet(map[string]int{"L1": 10, "L2": 10, "L3": 10}), faults: map[string]*faultState{}, hidden: map[string]int{},
		attempts: map[faultKey]int{}, absentSince: map[string]time.Time{}, open: open}
	r.start()
	defer func() { r.stop() }()
	cc, f := r.cc, r.f

	// Devices fleetd must never touch: tagged, unsupported, asleep.
	f.dev("L1", 7).Tags = []string{config.NoAutoRemediationTag}
	f.dev("L2", 8).Commands = map[string]string{bikeep.CmdUnlock: "/c"}
	d := f.dev("L2", 9)
	d.SleepState, d.PowerSaveStrategy = bikeep.SleepDeep, bikeep.PowerLocalWakeup
	forbidden := map[string]bool{"L1-d7": true, "L2-d8": true, "L2-d9": true}

	kinds := []health.FaultKind{health.Unhealthy, health.HardwareError, health.LockMismatch, health.Dead}
	episodeSends := map[string]int{}
	paused, dryRun := false, false

	for step := range steps {
		now := clock.Add(time.Duration(10+rng.IntN(80)) * time.Second)
		// Evolve faults; a storm now and then.
		stormLoc := ""
		if rng.IntN(30) == 0 {
			stormLoc = []string{"L1", "L2"}[rng.IntN(2)]
		}
		r.glitch(step)
		for _, l := range f.locs {
			for i := range l.devices {
				id := l.devices[i].ID
				fs := r.faults[id]
				switch {
				case fs == nil && (rng.IntN(80) == 0 || l.id == stormLoc && rng.IntN(2) == 0):
					r.faults[id] = &faultState{kind: kinds[rng.IntN(len(kinds))], firstSeen: now}
				case fs != nil && rng.IntN(clearOdds(i)) == 0:
					delete(r.faults, id)
				}
			}
		}
		if (!paused && rng.IntN(25) == 0) || (paused && rng.IntN(5) == 0) {
			paused = !paused
			if paused {
				mustNil(t, r.e.Pause("chaos"))
			} else {
				mustNil(t, r.e.Resume("chaos"))
			}
		}
		if (!dryRun && rng.IntN(25) == 0) || (dryRun && rng.IntN(5) == 0) {
			dryRun = !dryRun
			r.p.DryRun = dryRun
			mustNil(t, r.e.SetPolicy(r.p))
		}
		if rng.IntN(40) == 0 {
			r.restart()
		}
		r.listFaults(now)
		r.observeTruth(now)
		before := len(cc.sendsCopy())
		r.e.Observe(context.Background(), f.snap(now))
		(&env{t: t, e: r.e}).quiet()
		sends, outcomes := cc.sendsAndOutcomes()
		st := r.e.Status()
		blackout := p.Blackout[0].Active(now)
		for i, s := range sends[before:] {
			loc := s.DeviceID[:2]
			fs := r.faults[s.DeviceID]
			switch {
			case paused:
				return fmt.Sprintf("step %d: sent to %s while paused", step, s.DeviceID)
			case dryRun:
				return fmt.Sprintf("step %d: sent to %s in dry run", step, s.DeviceID)
			case blackout:
				return fmt.Sprintf("step %d: sent to %s in a blackout (%v)", step, s.DeviceID, now)
			case loc == "L3" || forbidden[s.DeviceID]:
				return fmt.Sprintf("step %d: sent to excluded/unsupported %s", step, s.DeviceID)
			case fs == nil || !fs.kind.RecoverableKind():
				return fmt.Sprintf("step %d: sent to %s without a recoverable fault", step, s.DeviceID)
			case !f.loc(loc).up:
				return fmt.Sprintf("step %d: sent to %s of a down location", step, s.DeviceID)
			case f.loc(loc).hidden[s.DeviceID]:
				return fmt.Sprintf("step %d: sent to %s, missing from its location's list", step, s.DeviceID)
			case now.Sub(fs.firstSeen) < p.MinFaultAge || fs.walks < 2:
				return fmt.Sprintf("step %d: sent to %s too young", step, s.DeviceID)
			}
			for _, sm := range st.Storms {
				if sm.Scope == fleetScope || sm.Scope == loc {
					return fmt.Sprintf("step %d: sent to %s during a storm in %s", step, s.DeviceID, sm.Scope)
				}
			}
			if outcomes[before+i] == "throttled" {
				continue // no command was created: not an attempt
			}
			ek := fmt.Sprintf("%s/%s/%v", s.DeviceID, fs.kind, fs.firstSeen)
			episodeSends[ek]++
			if episodeSends[ek] > p.MaxAttempts {
				return fmt.Sprintf("step %d: %d attempts in episode %s", step, episodeSends[ek], ek)
			}
			k := faultKey{s.DeviceID, fs.kind}
			r.attempts[k]++
			if r.attempts[k] == p.MaxAttempts {
				r.exhausted++
			}
			if r.attempts[k] > p.MaxAttempts {
				return fmt.Sprintf("step %d: %d attempt POSTs in the episode (%s, %s) since the last evidence that ended it", step, r.attempts[k], k.DeviceID, k.Fault)
			}
		}
		// Engine-side: one command in flight per device, at most max_in_flight.
		if len(st.InFlight) > p.MaxInFlight {
			return fmt.Sprintf("step %d: %d in flight", step, len(st.InFlight))
		}
		seen := map[string]bool{}
		for _, c := range st.InFlight {
			if seen[c.DeviceID] {
				return fmt.Sprintf("step %d: two commands in flight for %s", step, c.DeviceID)
			}
			seen[c.DeviceID] = true
		}
		// Token bucket: in every window [i, j] of one engine's life,
		// sends ≤ burst + rate·(t_j − t_i). Throttled POSTs spent tokens too.
		b, rt := float64(burst(p)), float64(p.Rate.Count)/p.Rate.Per.Seconds()
		for i := r.since; i < len(sends); i++ {
			for j := i; j < len(sends); j++ {
				if n := float64(j - i + 1); n > b+rt*sends[j].At.Sub(sends[i].At).Seconds()+1e-9 {
					return fmt.Sprintf("step %d: %v sends between %v and %v exceed the token bucket", step, n, sends[i].At, sends[j].At)
				}
			}
		}
		cc.mu.Lock()
		illegal := cc.illegal
		cc.mu.Unlock()
		if len(illegal) > 0 {
			return fmt.Sprintf("step %d: %s", step, illegal[0])
		}
	}
	return r.summary(seed, total)
}

// clearOdds: a fault of device i clears with probability 1/clearOdds per
// walk; the first device of each location is stubborn, so that
// episodes run to exhaustion while glitches, throttles and restarts go on.
func clearOdds(i int) int {
	if i == 0 {
		return 150
	}
	return 15
}

// summary logs what the run exercised, adds it to total, and fails a run
// that sent nothing.
func (r *chaosRun) summary(seed uint64, total map[string]int) string {
	sends, outcomes := r.cc.sendsAndOutcomes()
	count := map[string]int{}
	for _, o := range outcomes {
		count[o]++
	}
	r.t.Logf("seed %d: %d POSTs %v, %d restarts, %d devices, %d exhausted episodes, %d devices missing from complete lists",
		seed, len(sends), count, r.restarts, len(r.cc.posts), r.exhausted, len(r.hidden))
	total["throttled"] += count["throttled"]
	total["restarts"] += r.restarts
	total["exhausted"] += r.exhausted
	total["hidden"] += len(r.hidden)
	if len(sends) == 0 {
		return "no command was ever sent: the property test exercised nothing"
	}
	return ""
}

func (c *chaosCommander) sendsCopy() []sendCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sendCall(nil), c.sends...)
}

func (c *chaosCommander) sendsAndOutcomes() ([]sendCall, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sendCall(nil), c.sends...), append([]string(nil), c.outcomes...)
}
