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
)

// chaosCommander answers POSTs and polls at random (seeded) and checks,
// from the vendor's side, that no command is sent to a device whose
// previous command may still be running.
type chaosCommander struct {
	mu      sync.Mutex
	rng     *rand.Rand
	clock   func() time.Time
	policy  config.Remediation
	n       int
	sends   []sendCall
	last    map[string]*chaosCmd // by device
	byID    map[string]*chaosCmd
	illegal []string
}

type chaosCmd struct {
	device   string
	at       time.Time
	outcome  string // ok, definite, ambiguous
	terminal bool   // reported SUCCESS/ERROR to a poll
	hang     bool   // never finishes
}

func (c *chaosCommander) SendCommand(_ context.Context, deviceID string, req bikeep.CommandRequest) (*bikeep.Command, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock()
	c.sends = append(c.sends, sendCall{deviceID, req, now})
	if p := c.last[deviceID]; p != nil {
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
	cmd := &chaosCmd{device: deviceID, at: now}
	c.last[deviceID] = cmd
	switch r := c.rng.IntN(10); {
	case r < 1:
		cmd.outcome = "definite"
		return nil, &bikeep.APIError{StatusCode: 409, ErrorCode: "ERRORS.CONFLICT"}
	case r < 2:
		cmd.outcome = "ambiguous"
		return nil, &bikeep.AmbiguousSendError{DeviceID: deviceID, Err: context.DeadlineExceeded}
	default:
		cmd.outcome, cmd.hang = "ok", r == 9
		c.n++
		id := fmt.Sprintf("c%d", c.n)
		c.byID[id] = cmd
		return &bikeep.Command{ID: id, State: bikeep.CommandState{Value: bikeep.CommandSent}}, nil
	}
}

func (c *chaosCommander) GetCommand(_ context.Context, id string) (*bikeep.Command, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cmd := c.byID[id]
	if cmd.terminal {
		return &bikeep.Command{ID: id, State: bikeep.CommandState{Value: bikeep.CommandSuccess}}, nil
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
// pauses, dry runs, outages, blackouts and vendor behaviour, and checks the
// safety properties after every walk.
func TestPropertyRandomFaults(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6}
	steps := 600
	if testing.Short() {
		seeds, steps = seeds[:2], 100
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			if err := runProperty(t, seed, steps); err != "" {
				t.Fatalf("seed %d: %s", seed, err)
			}
		})
	}
}

func runProperty(t *testing.T, seed uint64, steps int) string {
	rng := rand.New(rand.NewPCG(seed, 99))
	p := testPolicy(t.TempDir())
	p.MinFaultAge, p.Cooldown, p.MaxAttempts = time.Minute, 3*time.Minute, 3
	p.Rate, p.MaxInFlight, p.CommandTimeout = config.Rate{Count: 2, Per: time.Minute}, 3, 2*time.Minute
	p.Storm = config.Storm{MaxFaultyRatio: 0.3, MinDevices: 8, Cooldown: 5 * time.Minute}
	p.Exclude.Locations = []string{"L3"}
	p.Blackout = []config.Blackout{{Start: "0 * * * *", Duration: 5 * time.Minute, Timezone: "UTC"}}
	clock := newClock()
	cc := &chaosCommander{rng: rand.New(rand.NewPCG(seed, 7)), clock: clock.Now, policy: p,
		last: map[string]*chaosCmd{}, byID: map[string]*chaosCmd{}}
	l, err := OpenLedger(p.Ledger)
	mustNil(t, err)
	defer l.Close()
	e, err := New(Options{Policy: p, Commander: cc, Ledger: l, Now: clock.Now, PollInterval: time.Millisecond})
	mustNil(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { cancel(); <-done }()

	f := newFleet(map[string]int{"L1": 10, "L2": 10, "L3": 10})
	// Devices fleetd must never touch: tagged, unsupported, asleep.
	f.dev("L1", 7).Tags = []string{config.NoAutoRemediationTag}
	f.dev("L2", 8).Commands = map[string]string{bikeep.CmdUnlock: "/c"}
	d := f.dev("L2", 9)
	d.SleepState, d.PowerSaveStrategy = bikeep.SleepDeep, bikeep.PowerLocalWakeup
	forbidden := map[string]bool{"L1-d7": true, "L2-d8": true, "L2-d9": true}

	type faultState struct {
		kind      health.FaultKind
		firstSeen time.Time
		walks     int
	}
	faults := map[string]*faultState{} // device → its one fault
	kinds := []health.FaultKind{health.Unhealthy, health.HardwareError, health.LockMismatch, health.Dead}
	episodeSends := map[string]int{}
	paused, dryRun := false, false
	v := &env{t: t, e: e}

	for step := range steps {
		now := clock.Add(time.Duration(10+rng.IntN(80)) * time.Second)
		// Evolve faults; a storm now and then.
		stormLoc := ""
		if rng.IntN(30) == 0 {
			stormLoc = []string{"L1", "L2"}[rng.IntN(2)]
		}
		for _, l := range f.locs {
			l.up = rng.IntN(15) != 0
			for i := range l.devices {
				id := l.devices[i].ID
				fs := faults[id]
				switch {
				case fs == nil && (rng.IntN(80) == 0 || l.id == stormLoc && rng.IntN(2) == 0):
					faults[id] = &faultState{kind: kinds[rng.IntN(len(kinds))], firstSeen: now}
				case fs != nil && rng.IntN(15) == 0:
					delete(faults, id)
				}
			}
		}
		if (!paused && rng.IntN(25) == 0) || (paused && rng.IntN(5) == 0) {
			paused = !paused
			if paused {
				mustNil(t, e.Pause("chaos"))
			} else {
				mustNil(t, e.Resume("chaos"))
			}
		}
		if (!dryRun && rng.IntN(25) == 0) || (dryRun && rng.IntN(5) == 0) {
			dryRun = !dryRun
			np := p
			np.DryRun = dryRun
			mustNil(t, e.SetPolicy(np))
		}
		for _, l := range f.locs {
			l.faults = nil
			for i := range l.devices {
				fs := faults[l.devices[i].ID]
				if fs == nil {
					continue
				}
				if l.up {
					fs.walks++
				}
				flt := f.fault(l.id, i, fs.kind, fs.firstSeen, fs.walks)
				flt.Recoverable = fs.kind.RecoverableKind()
			}
		}
		before := len(cc.sendsCopy())
		e.Observe(context.Background(), f.snap(now))
		v.quiet()
		sends := cc.sendsCopy()
		st := e.Status()
		blackout := p.Blackout[0].Active(now)
		for _, s := range sends[before:] {
			loc := s.DeviceID[:2]
			fs := faults[s.DeviceID]
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
			case now.Sub(fs.firstSeen) < p.MinFaultAge || fs.walks < 2:
				return fmt.Sprintf("step %d: sent to %s too young", step, s.DeviceID)
			}
			for _, sm := range st.Storms {
				if sm.Scope == fleetScope || sm.Scope == loc {
					return fmt.Sprintf("step %d: sent to %s during a storm in %s", step, s.DeviceID, sm.Scope)
				}
			}
			ek := fmt.Sprintf("%s/%s/%v", s.DeviceID, fs.kind, fs.firstSeen)
			episodeSends[ek]++
			if episodeSends[ek] > p.MaxAttempts {
				return fmt.Sprintf("step %d: %d attempts in episode %s", step, episodeSends[ek], ek)
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
		// Token bucket: in every window [i, j], sends ≤ burst + rate·(t_j − t_i).
		b, r := float64(burst(p)), float64(p.Rate.Count)/p.Rate.Per.Seconds()
		for i := range sends {
			for j := i; j < len(sends); j++ {
				if n := float64(j - i + 1); n > b+r*sends[j].At.Sub(sends[i].At).Seconds()+1e-9 {
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
	t.Logf("seed %d: %d sends", seed, len(cc.sendsCopy()))
	if n := len(cc.sendsCopy()); n == 0 {
		return "no command was ever sent: the property test exercised nothing"
	}
	return ""
}

func (c *chaosCommander) sendsCopy() []sendCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sendCall(nil), c.sends...)
}
