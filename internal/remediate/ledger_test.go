package remediate

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/health"
)

// TestRestartResumesPolling: an in-flight command survives a restart and is
// polled to its end; nothing is re-sent.
func TestRestartResumesPolling(t *testing.T) {
	p := testPolicy(t.TempDir())
	clock := newClock()
	cmd := newCommander(clock.Now)
	v := startEnv(t, p, clock, cmd)
	f := newFleet(map[string]int{"L1": 10})
	f.fault("L1", 0, health.Unhealthy, t0.Add(-time.Hour), 5)
	v.e.Observe(context.Background(), f.snap(t0))
	v.quiet()
	v.stop()

	gets := cmd.Gets("cmd-1")
	v2 := startEnv(t, p, clock, cmd)
	waitFor(t, "polling to resume", func() bool { return cmd.Gets("cmd-1") > gets })
	if v2.inFlight() != 1 {
		t.Fatalf("in flight after restart = %d", v2.inFlight())
	}
	v2.e.Observe(context.Background(), f.snap(clock.Add(time.Minute)))
	if d := v2.lastDecision("L1-d0"); d.Reason != ReasonInFlight {
		t.Fatalf("%+v, want in_flight", d)
	}
	cmd.SetState("cmd-1", bikeep.CommandSuccess)
	waitFor(t, "success", func() bool { return commandsTotal(v2, health.Unhealthy, ResultSuccess) == 1 })
	clock.Add(time.Minute)
	v2.e.Observe(context.Background(), f.snap(clock.Now()))
	if d := v2.lastDecision("L1-d0"); d.Reason != ReasonCooldown {
		t.Fatalf("%+v, want cooldown (restored from the ledger)", d)
	}
	if n := len(cmd.Sends()); n != 1 {
		t.Fatalf("%d POSTs, want 1", n)
	}
}

// TestRestartMidPOST: fleetd died between the write-ahead record and the
// POST's answer; the device stays blocked until the cooldown has passed.
func TestRestartMidPOST(t *testing.T) {
	p := testPolicy(t.TempDir())
	clock := newClock()
	cmd := newCommander(clock.Now)
	cmd.block = make(chan struct{}) // the POST never answers
	v := startEnv(t, p, clock, cmd)
	f := newFleet(map[string]int{"L1": 10})
	f.fault("L1", 0, health.Unhealthy, t0.Add(-time.Hour), 5)
	v.e.Observe(context.Background(), f.snap(t0))
	// Simulate the crash: read the ledger as a fresh process would see it
	// before the POST returned, by copying the file while the POST blocks.
	crashed := filepath.Join(t.TempDir(), "crashed.db")
	mustNil(t, v.ledger.CopyTo(crashed))
	v.stop()

	p.Ledger = crashed
	cmd2 := newCommander(clock.Now)
	v2 := startEnv(t, p, clock, cmd2)
	if st := v2.e.Status(); len(st.InFlight) != 1 || st.InFlight[0].State != phaseUnknown {
		t.Fatalf("in flight after restart: %+v", st.InFlight)
	}
	for _, step := range []struct {
		d    time.Duration
		want string
	}{{time.Minute, ReasonInFlight}, {14*time.Minute - time.Nanosecond, ReasonInFlight}, {time.Nanosecond, ""}} {
		v2.e.Observe(context.Background(), f.snap(clock.Add(step.d)))
		v2.quiet()
		d := v2.lastDecision("L1-d0")
		if step.want == "" {
			if d.Outcome != OutcomeSent || d.Attempt != 2 {
				t.Fatalf("after cooldown: %+v, want attempt 2", d)
			}
		} else if d.Reason != step.want {
			t.Fatalf("at +%v: %+v, want %s", clock.Now().Sub(t0), d, step.want)
		}
	}
	if n := len(cmd2.Sends()); n != 1 {
		t.Fatalf("%d POSTs after restart, want 1", n)
	}
}

// TestPauseAndStormSurviveRestart.
func TestPauseAndStormSurviveRestart(t *testing.T) {
	p := testPolicy(t.TempDir())
	clock := newClock()
	v := startEnv(t, p, clock, newCommander(clock.Now))
	f := newFleet(map[string]int{"L1": 10, "L2": 40})
	for i := range 4 {
		f.fault("L1", i, health.Unhealthy, t0.Add(-time.Hour), 5)
	}
	v.e.Observe(context.Background(), f.snap(t0)) // storm in L1
	mustNil(t, v.e.Pause("vendor maintenance"))
	v.stop()

	v2 := startEnv(t, p, clock, newCommander(clock.Now))
	st := v2.e.Status()
	if !st.Paused || st.PausedReason != "vendor maintenance" || len(st.Storms) != 1 || st.Storms[0].Scope != "L1" {
		t.Fatalf("after restart: %+v", st)
	}
	mustNil(t, v2.e.Resume("done"))
	// Calm now; the hold-below period starts afresh after the restart.
	f.clearFaults("L1")
	f.fault("L1", 0, health.Unhealthy, t0.Add(-time.Hour), 5)
	v2.e.Observe(context.Background(), f.snap(clock.Add(time.Minute)))
	if d := v2.lastDecision("L1-d0"); d.Reason != ReasonStorm {
		t.Fatalf("%+v, want storm", d)
	}
	v2.e.Observe(context.Background(), f.snap(clock.Add(10*time.Minute)))
	v2.quiet()
	if d := v2.lastDecision("L1-d0"); d.Outcome != OutcomeSent {
		t.Fatalf("%+v, want sent after the storm cooldown", d)
	}
	v2.stop()
	v3 := startEnv(t, p, clock, newCommander(clock.Now))
	if st := v3.e.Status(); st.Paused || len(st.Storms) != 0 {
		t.Fatalf("after second restart: %+v", st)
	}
}

func TestSetPolicyValidation(t *testing.T) {
	v := newEnv(t, nil)
	p := v.e.policy
	p.Trigger = "sometimes"
	if err := v.e.SetPolicy(p); err == nil {
		t.Fatal("invalid trigger accepted")
	}
	p = v.e.policy
	p.Rate = config.Rate{Count: 1, Per: time.Hour}
	mustNil(t, v.e.SetPolicy(p))
	if b := v.e.limiter.Burst(); b != 1 {
		t.Fatalf("burst after reload = %d", b)
	}
}
