package remediate

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/health"
)

// TestGates runs one decision for the fault of L1-d0 (hardware_error,
// 10 min old, 3 walks) through each gate at its boundaries, with the
// default policy (min_fault_age 2m, cooldown 15m, max_attempts 3, rate
// 30/m, max_in_flight 10, storm 0.25/8/10m).
func TestGates(t *testing.T) {
	at2 := time.Date(2025, 6, 15, 2, 0, 0, 0, time.UTC)
	blackout := func(p *config.Remediation) {
		p.Blackout = []config.Blackout{{Start: "0 2 * * *", Duration: time.Hour, Timezone: "UTC"}}
	}
	manyFaulty := func(loc string, n int) func(*env, *fleet, time.Time) {
		return func(_ *env, f *fleet, now time.Time) {
			// n devices of loc faulty in all, counting L1-d0's own fault.
			start := 0
			if loc == "L1" {
				start = 1
			}
			for i := start; i < n; i++ {
				f.fault(loc, i, health.NotResponding, now.Add(-time.Minute), 1) // too young: never sent
			}
		}
	}
	inflight := func(dev string) func(*env, *fleet, time.Time) {
		return func(v *env, _ *fleet, now time.Time) {
			c := &command{rec: commandRecord{DeviceID: dev, Fault: health.Unhealthy, SentAt: now.Add(-time.Hour), Phase: phasePolling, CommandID: "x"}}
			v.e.inflight[dev] = c
		}
	}
	tests := []struct {
		name   string
		policy func(*config.Remediation)
		locs   map[string]int
		at     time.Time
		setup  func(v *env, f *fleet, now time.Time)
		want   string // skip reason; "" = sent; ReasonDryRun = dry_run outcome
	}{
		{name: "all gates pass", want: ""},
		{name: "disabled", policy: func(p *config.Remediation) { p.Enabled = false }, want: ReasonDisabled},
		{name: "paused", setup: func(v *env, _ *fleet, _ time.Time) { mustNil(t, v.e.Pause("maintenance")) }, want: ReasonPaused},
		{name: "disabled before paused", policy: func(p *config.Remediation) { p.Enabled = false },
			setup: func(v *env, _ *fleet, _ time.Time) { mustNil(t, v.e.Pause("maintenance")) }, want: ReasonDisabled},
		{name: "blackout opening", policy: blackout, at: at2, want: ReasonBlackout},
		{name: "blackout last instant", policy: blackout, at: at2.Add(time.Hour - time.Nanosecond), want: ReasonBlackout},
		{name: "blackout closed at end", policy: blackout, at: at2.Add(time.Hour), want: ""},
		{name: "blackout not yet open", policy: blackout, at: at2.Add(-time.Nanosecond), want: ""},
		{name: "paused before blackout", policy: blackout, at: at2,
			setup: func(v *env, _ *fleet, _ time.Time) { mustNil(t, v.e.Pause("x")) }, want: ReasonPaused},
		{name: "excluded location", policy: func(p *config.Remediation) { p.Exclude.Locations = []string{"L1"} }, want: ReasonExcluded},
		{name: "other location excluded", policy: func(p *config.Remediation) { p.Exclude.Locations = []string{"L2"} }, want: ""},
		{name: "excluded device type", policy: func(p *config.Remediation) { p.Exclude.DeviceTypes = []string{"LOCKER"} }, want: ReasonExcluded},
		{name: "excluded tag", setup: func(_ *env, f *fleet, _ time.Time) {
			f.dev("L1", 0).Tags = []string{"zone-a", config.NoAutoRemediationTag}
		}, want: ReasonExcluded},
		{name: "blackout before excluded", policy: func(p *config.Remediation) {
			blackout(p)
			p.Exclude.Locations = []string{"L1"}
		}, at: at2, want: ReasonBlackout},
		{name: "excluded before unsupported", setup: func(_ *env, f *fleet, _ time.Time) {
			d := f.dev("L1", 0)
			d.Tags, d.Commands = []string{config.NoAutoRemediationTag}, map[string]string{bikeep.CmdLock: "/c"}
		}, want: ReasonExcluded},
		{name: "unsupported: no sync-device", setup: func(_ *env, f *fleet, _ time.Time) {
			f.dev("L1", 0).Commands = map[string]string{bikeep.CmdUnlock: "/c"}
		}, want: ReasonUnsupported},
		{name: "unsupported: deep sleep, local wakeup", setup: func(_ *env, f *fleet, _ time.Time) {
			d := f.dev("L1", 0)
			d.SleepState, d.PowerSaveStrategy = bikeep.SleepDeep, bikeep.PowerLocalWakeup
		}, want: ReasonUnsupported},
		{name: "deep sleep, remote wakeup is reachable", setup: func(_ *env, f *fleet, _ time.Time) {
			d := f.dev("L1", 0)
			d.SleepState, d.PowerSaveStrategy = bikeep.SleepDeep, bikeep.PowerRemoteWakeup
		}, want: ""},
		{name: "not recoverable: device dead", setup: func(_ *env, f *fleet, _ time.Time) {
			f.loc("L1").faults[0].Recoverable = false
		}, want: ReasonNotRecoverable},
		{name: "not recoverable before unsupported", setup: func(_ *env, f *fleet, _ time.Time) {
			f.loc("L1").faults[0].Recoverable = false
			f.dev("L1", 0).Commands = nil
		}, want: ReasonNotRecoverable},
		{name: "too young: just under min_fault_age", setup: func(_ *env, f *fleet, now time.Time) {
			f.loc("L1").faults[0].FirstSeen = now.Add(-2*time.Minute + time.Nanosecond)
		}, want: ReasonTooYoung},
		{name: "exactly min_fault_age passes", setup: func(_ *env, f *fleet, now time.Time) {
			f.loc("L1").faults[0].FirstSeen = now.Add(-2 * time.Minute)
		}, want: ""},
		{name: "too young: one walk", setup: func(_ *env, f *fleet, _ time.Time) { f.loc("L1").faults[0].Walks = 1 }, want: ReasonTooYoung},
		{name: "two walks pass", setup: func(_ *env, f *fleet, _ time.Time) { f.loc("L1").faults[0].Walks = 2 }, want: ""},
		{name: "unsupported before too young", setup: func(_ *env, f *fleet, _ time.Time) {
			f.loc("L1").faults[0].Walks = 1
			f.dev("L1", 0).Commands = nil
		}, want: ReasonUnsupported},
		{name: "location ratio exactly max", locs: map[string]int{"L1": 20, "L2": 10},
			setup: manyFaulty("L1", 5), want: ""}, // 5/20 = 0.25
		{name: "location ratio just above max", locs: map[string]int{"L1": 20, "L2": 10},
			setup: manyFaulty("L1", 6), want: ReasonStorm}, // 6/20; fleet 6/30 = 0.2
		{name: "location below min_devices: no storm", locs: map[string]int{"L1": 7, "L2": 40},
			setup: manyFaulty("L1", 7), want: ""}, // 7/7 but < 8 devices; fleet 7/47
		{name: "location at min_devices: storm", locs: map[string]int{"L1": 8, "L2": 40},
			setup: manyFaulty("L1", 3), want: ReasonStorm}, // 3/8 = 0.375
		{name: "fleet storm blocks a calm location", locs: map[string]int{"L1": 10, "L2": 7},
			setup: manyFaulty("L2", 7), want: ReasonStorm}, // L1 1/10, L2 7/7 (< min), fleet 8/17
		{name: "down location does not count", locs: map[string]int{"L1": 10, "L2": 10},
			setup: func(v *env, f *fleet, now time.Time) {
				manyFaulty("L2", 10)(v, f, now)
				f.loc("L2").up = false
			}, want: ""},
		{name: "too young before storm", locs: map[string]int{"L1": 20, "L2": 10},
			setup: func(v *env, f *fleet, now time.Time) {
				manyFaulty("L1", 10)(v, f, now)
				f.loc("L1").faults[0].Walks = 1
			}, want: ReasonTooYoung},
		{name: "in flight", setup: inflight("L1-d0"), want: ReasonInFlight},
		{name: "storm before in flight", locs: map[string]int{"L1": 20, "L2": 10},
			setup: func(v *env, f *fleet, now time.Time) {
				manyFaulty("L1", 6)(v, f, now)
				inflight("L1-d0")(v, f, now)
			}, want: ReasonStorm},
		{name: "cooldown just under", setup: func(v *env, _ *fleet, now time.Time) {
			v.e.devices["L1-d0"] = now.Add(-15*time.Minute + time.Nanosecond)
		}, want: ReasonCooldown},
		{name: "cooldown exactly passed", setup: func(v *env, _ *fleet, now time.Time) {
			v.e.devices["L1-d0"] = now.Add(-15 * time.Minute)
		}, want: ""},
		{name: "in flight before cooldown", setup: func(v *env, f *fleet, now time.Time) {
			v.e.devices["L1-d0"] = now
			inflight("L1-d0")(v, f, now)
		}, want: ReasonInFlight},
		{name: "attempts max-1", setup: episodeWith(2), want: ""},
		{name: "attempts max: exhausted", setup: episodeWith(3), want: ReasonExhausted},
		{name: "cooldown before exhausted", setup: func(v *env, f *fleet, now time.Time) {
			episodeWith(3)(v, f, now)
			v.e.devices["L1-d0"] = now
		}, want: ReasonCooldown},
		{name: "in-flight cap reached", policy: func(p *config.Remediation) { p.MaxInFlight = 1 },
			setup: inflight("L2-d0"), want: ReasonMaxInFlight},
		{name: "in-flight cap not reached", policy: func(p *config.Remediation) { p.MaxInFlight = 2 },
			setup: inflight("L2-d0"), want: ""},
		{name: "exhausted before in-flight cap", policy: func(p *config.Remediation) { p.MaxInFlight = 1 },
			setup: func(v *env, f *fleet, now time.Time) {
				inflight("L2-d0")(v, f, now)
				episodeWith(3)(v, f, now)
			}, want: ReasonExhausted},
		{name: "rate limited: bucket empty", setup: func(v *env, _ *fleet, now time.Time) {
			v.e.limiter.AllowN(now, v.e.limiter.Burst())
		}, want: ReasonRateLimited},
		{name: "in-flight cap before rate", policy: func(p *config.Remediation) { p.MaxInFlight = 1 },
			setup: func(v *env, f *fleet, now time.Time) {
				inflight("L2-d0")(v, f, now)
				v.e.limiter.AllowN(now, v.e.limiter.Burst())
			}, want: ReasonMaxInFlight},
		{name: "dry run", policy: func(p *config.Remediation) { p.DryRun = true }, want: ReasonDryRun},
		{name: "rate before dry run", policy: func(p *config.Remediation) { p.DryRun = true },
			setup: func(v *env, _ *fleet, now time.Time) { v.e.limiter.AllowN(now, v.e.limiter.Burst()) }, want: ReasonRateLimited},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, tc.policy)
			now := t0
			if !tc.at.IsZero() {
				now = tc.at
			}
			v.clock.Set(now)
			locs := tc.locs
			if locs == nil {
				locs = map[string]int{"L1": 10, "L2": 10}
			}
			f := newFleet(locs)
			f.fault("L1", 0, health.HardwareError, now.Add(-10*time.Minute), 3)
			if tc.setup != nil {
				tc.setup(v, f, now)
			}
			tokens := v.e.limiter.TokensAt(now)
			v.e.Observe(context.Background(), f.snap(now))
			v.quiet()
			d := v.lastDecision("L1-d0")
			sends := 0
			for _, s := range v.cmd.Sends() {
				if s.DeviceID == "L1-d0" {
					sends++
				}
			}
			switch tc.want {
			case "":
				if d.Outcome != OutcomeSent || sends != 1 {
					t.Fatalf("decision %+v, %d sends; want sent once", d, sends)
				}
			case ReasonDryRun:
				if d.Outcome != OutcomeDryRun || d.Reason != "" || sends != 0 {
					t.Fatalf("decision %+v, %d sends; want dry_run", d, sends)
				}
				if got := v.e.limiter.TokensAt(now); got != tokens {
					t.Errorf("dry run spent tokens: %v → %v", tokens, got)
				}
				if len(v.e.commands) != 0 || len(v.e.episodes) != 0 || len(v.e.devices) != 0 {
					t.Errorf("dry run touched state: %d commands, %d episodes, %d devices", len(v.e.commands), len(v.e.episodes), len(v.e.devices))
				}
			default:
				if d.Outcome != OutcomeSkipped || d.Reason != tc.want || sends != 0 {
					t.Fatalf("decision %+v, %d sends; want skipped %q", d, sends, tc.want)
				}
			}
			if tc.want != "" {
				if got := testutil.ToFloat64(v.e.m.skippedVec.WithLabelValues(tc.want)); got < 1 {
					t.Errorf("skipped_total{reason=%q} = %v, want ≥ 1", tc.want, got)
				}
			}
		})
	}
}

func episodeWith(attempts int) func(*env, *fleet, time.Time) {
	return func(v *env, f *fleet, now time.Time) {
		flt := f.loc("L1").faults[0]
		v.e.episodes[faultKey{flt.DeviceID, flt.Kind}] = &episodeRecord{
			DeviceID: flt.DeviceID, LocationID: "L1", Fault: flt.Kind, FirstSeen: flt.FirstSeen, Attempts: attempts, LastAttempt: now.Add(-time.Hour)}
	}
}

func mustNil(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestRateBucket: burst = min(rate count, max_in_flight), then refill at
// the configured rate on the engine clock.
func TestRateBucket(t *testing.T) {
	v := newEnv(t, func(p *config.Remediation) {
		p.Rate = config.Rate{Count: 2, Per: time.Minute}
		p.MaxInFlight = 10
		p.Storm.MaxFaultyRatio = 1
	})
	f := newFleet(map[string]int{"L1": 10})
	for i := range 4 {
		f.fault("L1", i, health.Unhealthy, t0.Add(-time.Hour), 5)
	}
	sent := func() int { v.quiet(); return len(v.cmd.Sends()) }
	v.e.Observe(context.Background(), f.snap(t0))
	if n := sent(); n != 2 {
		t.Fatalf("first pass sent %d, want burst 2", n)
	}
	v.clock.Add(30*time.Second - time.Millisecond)
	v.e.Observe(context.Background(), f.snap(v.clock.Now()))
	if n := sent(); n != 2 {
		t.Fatalf("just before refill: %d sends, want 2", n)
	}
	v.clock.Add(time.Millisecond)
	v.e.Observe(context.Background(), f.snap(v.clock.Now()))
	if n := sent(); n != 3 {
		t.Fatalf("after 30s: %d sends, want 3", n)
	}
	if got := testutil.ToFloat64(v.e.m.skippedVec.WithLabelValues(ReasonRateLimited)); got != 2+2+1 {
		t.Errorf("rate_limited = %v, want 5", got)
	}
	if b := burst(config.Remediation{Rate: config.Rate{Count: 30, Per: time.Minute}, MaxInFlight: 10}); b != 10 {
		t.Errorf("burst(30/m, 10) = %d, want 10", b)
	}
}

// TestStormHold: a storm ends only after the ratio stayed ≤ max for the
// storm cooldown, continuously; a relapse restarts the hold.
func TestStormHold(t *testing.T) {
	v := newEnv(t, nil)
	f := newFleet(map[string]int{"L1": 10, "L2": 40})
	calm := func() { f.clearFaults("L1"); f.fault("L1", 0, health.Unhealthy, t0.Add(-time.Hour), 9) }
	stormy := func() {
		calm()
		for i := 1; i < 4; i++ {
			f.fault("L1", i, health.Unhealthy, v.clock.Now(), 1)
		}
	}
	step := func(d time.Duration) Decision {
		v.clock.Add(d)
		v.e.Observe(context.Background(), f.snap(v.clock.Now()))
		v.quiet()
		return v.lastDecision("L1-d0")
	}
	stormy()
	if d := step(0); d.Reason != ReasonStorm {
		t.Fatalf("4/10 faulty: %+v, want storm", d)
	}
	want := `# HELP fleetd_remediation_storm_active 1 while a fault storm holds back remediation in this scope (fleet, or a location_id; a location series exists only while its storm lasts, including the hold-below period).
# TYPE fleetd_remediation_storm_active gauge
fleetd_remediation_storm_active{scope="L1"} 1
fleetd_remediation_storm_active{scope="fleet"} 0
`
	if err := testutil.GatherAndCompare(v.reg, strings.NewReader(want), "fleetd_remediation_storm_active"); err != nil {
		t.Fatal(err)
	}
	calm()
	if d := step(time.Minute); d.Reason != ReasonStorm { // hold starts
		t.Fatalf("hold start: %+v", d)
	}
	if d := step(9 * time.Minute); d.Reason != ReasonStorm {
		t.Fatalf("9m below: %+v", d)
	}
	stormy() // relapse: the hold restarts
	step(30 * time.Second)
	calm()
	if d := step(30 * time.Second); d.Reason != ReasonStorm {
		t.Fatalf("after relapse: %+v", d)
	}
	if d := step(10*time.Minute - time.Nanosecond); d.Reason != ReasonStorm {
		t.Fatalf("just under cooldown: %+v", d)
	}
	if d := step(time.Nanosecond); d.Outcome != OutcomeSent {
		t.Fatalf("after cooldown: %+v, want sent", d)
	}
	want = `# HELP fleetd_remediation_storm_active 1 while a fault storm holds back remediation in this scope (fleet, or a location_id; a location series exists only while its storm lasts, including the hold-below period).
# TYPE fleetd_remediation_storm_active gauge
fleetd_remediation_storm_active{scope="fleet"} 0
`
	if err := testutil.GatherAndCompare(v.reg, strings.NewReader(want), "fleetd_remediation_storm_active"); err != nil {
		t.Fatal(err)
	}
}

// TestTrigger: alertmanager-only engines make no walk decisions; internal
// engines refuse webhook requests.
func TestTrigger(t *testing.T) {
	for _, tc := range []struct {
		trigger        string
		walkSends      int
		requestOutcome string
		requestReason  string
	}{
		{config.TriggerInternal, 1, OutcomeSkipped, ReasonTrigger},
		{config.TriggerAlertmanager, 0, OutcomeSent, ""},
		{config.TriggerBoth, 1, OutcomeSkipped, ReasonInFlight},
	} {
		t.Run(tc.trigger, func(t *testing.T) {
			v := newEnv(t, func(p *config.Remediation) { p.Trigger = tc.trigger })
			f := newFleet(map[string]int{"L1": 10})
			f.fault("L1", 0, health.Unhealthy, t0.Add(-time.Hour), 5)
			v.e.Observe(context.Background(), f.snap(t0))
			v.quiet()
			if n := len(v.cmd.Sends()); n != tc.walkSends {
				t.Fatalf("walk sent %d, want %d", n, tc.walkSends)
			}
			d := v.e.Request(context.Background(), Request{DeviceID: "L1-d0", LocationID: "L1", Fault: health.Unhealthy})
			v.quiet()
			if d.Outcome != tc.requestOutcome || d.Reason != tc.requestReason || d.Source != SourceAlertmanager {
				t.Fatalf("request: %+v, want %s/%s", d, tc.requestOutcome, tc.requestReason)
			}
		})
	}
}

// TestRequestGates: webhook requests about faults fleetd does not see.
func TestRequestGates(t *testing.T) {
	v := newEnv(t, func(p *config.Remediation) { p.Trigger = config.TriggerAlertmanager })
	f := newFleet(map[string]int{"L1": 10, "L2": 10})
	f.fault("L1", 0, health.Unhealthy, t0.Add(-time.Hour), 5)
	f.fault("L1", 1, health.Dead, t0.Add(-time.Hour), 5)
	f.fault("L2", 0, health.Unhealthy, t0.Add(-time.Hour), 5)
	f.loc("L2").up = false
	v.e.Observe(context.Background(), f.snap(t0))
	for _, tc := range []struct {
		r    Request
		want string
	}{
		{Request{DeviceID: "L1-d1", Fault: health.Dead}, ReasonNotRecoverable},
		{Request{DeviceID: "L1-d2", Fault: health.Unhealthy}, ReasonNotActive},
		{Request{DeviceID: "nope", Fault: health.HardwareError}, ReasonNotActive},
		{Request{DeviceID: "L1-d0", LocationID: "L2", Fault: health.Unhealthy}, ReasonNotActive},
		{Request{DeviceID: "L2-d0", Fault: health.Unhealthy}, ReasonNotActive}, // location down: stale
		{Request{DeviceID: "L1-d0", Fault: health.UnknownState}, ReasonNotRecoverable},
	} {
		t.Run(fmt.Sprintf("%s/%s", tc.r.DeviceID, tc.r.Fault), func(t *testing.T) {
			d := v.e.Request(context.Background(), tc.r)
			if d.Outcome != OutcomeSkipped || d.Reason != tc.want {
				t.Fatalf("%+v, want skipped %s", d, tc.want)
			}
		})
	}
	if n := len(v.cmd.Sends()); n != 0 {
		t.Fatalf("%d sends", n)
	}
}
