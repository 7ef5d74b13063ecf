package remediate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/cluster"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/remediate/store"
)

// Two engines on one ledger stand for two replicas. A replica remediates
// only the locations it owns; when a location moves, its new owner takes
// over the previous owner's in-flight command from the ledger and polls it
// to the end without sending another, and the previous owner, which no
// longer sees the location, neither forgets its episode nor touches it.
func TestResyncTakesOverAnotherReplicasCommands(t *testing.T) {
	p := testPolicy(t.TempDir())
	ledger := openTestLedger(t, p.Ledger)
	clock := newClock()
	cmd := newCommander(clock.Now)
	var mu sync.Mutex
	owner := map[string]string{"L1": "a", "L2": "a"}
	move := func(loc, to string) { mu.Lock(); owner[loc] = to; mu.Unlock() }
	start := func(id string) (*Engine, func()) {
		t.Helper()
		e, err := New(Options{Policy: p, Commander: cmd, Ledger: ledger, Now: clock.Now, PollInterval: time.Millisecond,
			Logger: testLogger(t), Owns: func(loc string) bool { mu.Lock(); defer mu.Unlock(); return owner[loc] == id }})
		if err != nil {
			t.Fatal(err)
		}
		_, stop := runEngine(t, e)
		return e, stop
	}
	ctx := context.Background()
	f := newFleet(map[string]int{"L1": 4, "L2": 4})
	f.fault("L1", 0, health.Unhealthy, t0.Add(-time.Hour), 10)
	dev := f.dev("L1", 0).ID

	a, crashA := start("a")
	b, _ := start("b")
	for _, e := range []*Engine{a, b} {
		if err := e.Resync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	b.Observe(ctx, f.snap(clock.Now())) // not b's location: nothing
	// Reserve runs in the pass itself: no record means no POST either.
	if st, err := ledger.Load(ctx); err != nil || len(st.Commands) != 0 {
		t.Fatalf("a replica that does not own the location recorded commands: %+v, %v", st.Commands, err)
	}
	a.Observe(ctx, f.snap(clock.Now()))
	waitFor(t, "a's command polling", func() bool { return cmd.Gets("cmd-1") > 0 })
	crashA() // its command stays in flight in the ledger

	move("L1", "b")
	if err := b.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	before := cmd.Gets("cmd-1")
	waitFor(t, "b polling a's command", func() bool { return cmd.Gets("cmd-1") > before })
	b.Observe(ctx, f.snap(clock.Add(time.Second))) // fault still there, command in flight
	cmd.SetState("cmd-1", bikeep.CommandSuccess)
	waitFor(t, "a's command ended in the ledger", func() bool {
		st, err := ledger.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(st.Commands) == 1 && st.Commands[0].Phase == store.PhaseDone
	})
	clock.Add(time.Minute)
	b.Observe(ctx, f.snap(clock.Now())) // within the cooldown of a's send
	if sends := cmd.Sends(); len(sends) != 1 {
		t.Fatalf("%d commands sent, want only a's (b must take it over, not resend): %+v", len(sends), sends)
	}
	if d := b.lastDecisionFor(dev); d.Reason != ReasonCooldown && d.Reason != ReasonInFlight {
		t.Errorf("b's decision for %s = %+v, want a cooldown or in-flight skip", dev, d)
	}

	// a comes back owning only L2: walking it for longer than forget_after
	// must not forget or rewrite the episode of L1, which it does not see.
	a2, _ := start("a")
	if err := a2.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	only := newFleet(map[string]int{"L2": 4})
	for range 3 {
		a2.Observe(ctx, only.snap(clock.Add(p.ForgetAfter)))
	}
	st, err := ledger.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Episodes) != 1 || st.Episodes[0].DeviceID != dev || !st.Episodes[0].AbsentSince.IsZero() {
		t.Fatalf("episodes after the former owner walked without L1: %+v", st.Episodes)
	}
}

// lastDecisionFor returns the newest recorded decision for a device (zero
// if none).
func (e *Engine) lastDecisionFor(deviceID string) Decision {
	for _, d := range e.Status().Decisions {
		if d.DeviceID == deviceID {
			return d
		}
	}
	return Decision{}
}

// fakeFleet answers FleetCounts with fixed totals (or an error) and keeps
// what it was given.
type fakeFleet struct {
	mu    sync.Mutex
	total cluster.Count
	err   error
	got   map[string]cluster.Count
}

func (f *fakeFleet) FleetCounts(_ context.Context, per map[string]cluster.Count) (cluster.Count, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = maps.Clone(per)
	return f.total, f.err
}

// With replicas the fleet-wide storm brake measures the whole fleet: this
// replica publishes its Up locations' counts and brakes on the shared
// totals, and falls back to its own locations when they are unavailable.
func TestFleetStormMeasuredAcrossReplicas(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fleet     *fakeFleet
		wantStorm bool
	}{
		{"the fleet is in a storm elsewhere", &fakeFleet{total: cluster.Count{Devices: 1000, Faulty: 500}}, true},
		{"the fleet is calm", &fakeFleet{total: cluster.Count{Devices: 1000, Faulty: 10}}, false},
		{"shared counts unavailable: own locations", &fakeFleet{err: errors.New("database down")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPolicy(t.TempDir())
			ledger := openTestLedger(t, p.Ledger)
			clock := newClock()
			cmd := newCommander(clock.Now)
			e, err := New(Options{Policy: p, Commander: cmd, Ledger: ledger, Now: clock.Now, PollInterval: time.Millisecond,
				Logger: testLogger(t), Owns: func(string) bool { return true }, Fleet: tc.fleet})
			if err != nil {
				t.Fatal(err)
			}
			ctx, _ := runEngine(t, e)
			f := newFleet(map[string]int{"L1": 20, "L2": 30})
			f.fault("L1", 0, health.Unhealthy, t0.Add(-time.Hour), 10)
			f.loc("L2").up = false
			e.Observe(ctx, f.snap(clock.Now()))
			d := e.lastDecisionFor("L1-d0")
			if storm := d.Reason == ReasonStorm; storm != tc.wantStorm {
				t.Errorf("decision %+v; want storm %v", d, tc.wantStorm)
			}
			if want := map[string]cluster.Count{"L1": {Devices: 20, Faulty: 1}}; !maps.Equal(tc.fleet.got, want) {
				t.Errorf("published %v, want %v (Up locations only)", tc.fleet.got, want)
			}
		})
	}
}

// A replica that lost its slot lease between recording an attempt and the
// POST (frozen in between, or it gave the slot up to balance the slots)
// sends nothing: the record goes and the attempt is given back — it never
// left — while the cooldown stays counted. Once the replica may send again
// the device gets all of its max_attempts commands, not one fewer.
func TestNoPOSTAfterTheLeaseIsLost(t *testing.T) {
	p := testPolicy(t.TempDir())
	ledger := openTestLedger(t, p.Ledger)
	clock := newClock()
	cmd := newCommander(clock.Now)
	logs := &logBuffer{}
	var lease atomic.Bool
	e, err := New(Options{Policy: p, Commander: cmd, Ledger: ledger, Now: clock.Now, PollInterval: time.Millisecond,
		Logger: bufferLogger(t, logs), Owns: func(string) bool { return true }, MaySend: func(string) bool { return lease.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, _ := runEngine(t, e)
	f := newFleet(map[string]int{"L1": 10})
	f.fault("L1", 0, health.Unhealthy, t0.Add(-time.Hour), 10)
	dev := f.dev("L1", 0).ID
	e.Observe(ctx, f.snap(clock.Now()))
	waitFor(t, "the send goroutine to give up", func() bool {
		return len(logs.Lines("remediation command not sent: the slot lease was lost before the POST")) == 1
	})
	if n := len(cmd.Sends()); n != 0 {
		t.Fatalf("%d POSTs after the lease was lost", n)
	}
	st, err := ledger.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Commands) != 0 || len(st.Episodes) != 0 || len(st.Devices) != 1 {
		t.Fatalf("ledger after a command not sent: %+v; want no command, the attempt given back, the last send kept", st)
	}
	e.Observe(ctx, f.snap(clock.Add(time.Second)))
	if d := e.lastDecisionFor(dev); d.Reason != ReasonCooldown {
		t.Errorf("decision within the cooldown of the attempt not sent: %+v, want a cooldown skip", d)
	}

	lease.Store(true)
	for attempt := 1; attempt <= p.MaxAttempts; attempt++ {
		e.Observe(ctx, f.snap(clock.Add(p.Cooldown)))
		if d := e.lastDecisionFor(dev); d.Outcome != OutcomeSent || d.Attempt != attempt {
			t.Fatalf("attempt %d: decision %+v, want it sent", attempt, d)
		}
		waitFor(t, "the POST", func() bool { return len(cmd.Sends()) == attempt })
		cmd.SetState(fmt.Sprintf("cmd-%d", attempt), bikeep.CommandSuccess)
		waitFor(t, "the command to end", func() bool {
			st, err := ledger.Load(ctx)
			return err == nil && len(st.Commands) == 1 && st.Commands[0].Phase == store.PhaseDone
		})
		e.Observe(ctx, f.snap(clock.Add(time.Second))) // verified: not fixed
	}
	e.Observe(ctx, f.snap(clock.Add(p.Cooldown)))
	if d := e.lastDecisionFor(dev); d.Reason != ReasonExhausted {
		t.Errorf("after %d POSTs: decision %+v, want exhausted", len(cmd.Sends()), d)
	}
}

// A replica that has just lost a location, before any resync, must not
// write that location's episode from its stale memory: the new owner may
// have counted more attempts meanwhile.
func TestLostLocationIsNotWrittenFromStaleMemory(t *testing.T) {
	p := testPolicy(t.TempDir())
	p.Cooldown = time.Minute
	ledger := openTestLedger(t, p.Ledger)
	clock := newClock()
	cmd := newCommander(clock.Now)
	var mu sync.Mutex
	owner := "a"
	e, err := New(Options{Policy: p, Commander: cmd, Ledger: ledger, Now: clock.Now, PollInterval: time.Millisecond,
		Logger: testLogger(t), Owns: func(string) bool { mu.Lock(); defer mu.Unlock(); return owner == "a" }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, _ := runEngine(t, e)
	f := newFleet(map[string]int{"L1": 10})
	f.fault("L1", 0, health.Unhealthy, t0.Add(-time.Hour), 10)
	e.Observe(ctx, f.snap(clock.Now()))
	waitFor(t, "the POST", func() bool { return len(cmd.Sends()) == 1 })
	cmd.SetState("cmd-1", bikeep.CommandError)
	waitFor(t, "the command ended", func() bool {
		st, _ := ledger.Load(ctx)
		return len(st.Commands) == 1 && st.Commands[0].Phase == store.PhaseDone
	})
	// L1 moves away; the new owner records a second attempt.
	mu.Lock()
	owner = "b"
	mu.Unlock()
	st, _ := ledger.Load(ctx)
	ep := st.Episodes[0]
	ep.Attempts = 2
	if err := ledger.Apply(ctx, store.PutEpisode(ep)); err != nil {
		t.Fatal(err)
	}
	// The former owner walks without L1 (its scraper forgot it).
	empty := newFleet(map[string]int{"L2": 5})
	for range 3 {
		e.Observe(ctx, empty.snap(clock.Add(time.Hour)))
	}
	st, _ = ledger.Load(ctx)
	if len(st.Episodes) != 1 || st.Episodes[0].Attempts != 2 || !st.Episodes[0].AbsentSince.IsZero() {
		t.Fatalf("episode after the former owner's passes: %+v; want the new owner's, untouched", st.Episodes)
	}
}
