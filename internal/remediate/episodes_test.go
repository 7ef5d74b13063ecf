package remediate

import (
	"context"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/remediate/store"
	"github.com/fleetd/fleetd/internal/scrape"
)

// exhaust builds an engine with max_attempts 1 whose device L1-d0 used its
// one attempt on a hardware_error (the command ended, its cooldown passed).
func exhaust(t *testing.T) (*env, *fleet) {
	t.Helper()
	v := newEnv(t, func(p *config.Remediation) { p.MaxAttempts, p.PowerCycleFromAttempt = 1, 1 })
	f := newFleet(map[string]int{"L1": 10, "L2": 10})
	f.fault("L1", 0, health.HardwareError, t0.Add(-time.Hour), 5)
	v.e.Observe(context.Background(), f.snap(t0))
	v.quiet()
	v.cmd.SetState("cmd-1", bikeep.CommandError)
	waitFor(t, "attempt 1 to end", func() bool { return v.inFlight() == 0 })
	v.clock.Add(20 * time.Minute)
	v.e.Observe(context.Background(), f.snap(v.clock.Now()))
	if d := v.lastDecision("L1-d0"); d.Reason != ReasonExhausted {
		t.Fatalf("setup: %+v, want exhausted", d)
	}
	return v, f
}

// walk observes the fleet after dt and returns L1-d0's last recorded
// decision (zero if there is none).
func (v *env) walk(f *fleet, dt time.Duration) Decision {
	v.t.Helper()
	v.e.Observe(context.Background(), f.snap(v.clock.Add(dt)))
	v.quiet()
	for _, d := range v.e.Status().Decisions {
		if d.DeviceID == "L1-d0" {
			return d
		}
	}
	return Decision{}
}

// refault makes L1-d0's hardware_error reappear as the fault tracker reports
// it after losing it: a new first-seen time, old enough to act on.
func refault(v *env, f *fleet) {
	f.clearFaults("L1")
	f.fault("L1", 0, health.HardwareError, v.clock.Now().Add(-10*time.Minute), 3)
}

// TestEpisodeSurvivesGlitches: nothing but evidence ends an episode. After
// each glitch the fault comes back with a new first-seen time and the
// exhausted device gets nothing more.
func TestEpisodeSurvivesGlitches(t *testing.T) {
	l1 := func(f *fleet) *locSpec { return f.loc("L1") }
	tests := []struct {
		name   string
		glitch func(v *env, f *fleet)
	}{
		{"location failed", func(v *env, f *fleet) {
			l1(f).up = false
			f.clearFaults("L1")
			v.walk(f, time.Minute)
			l1(f).up = true
		}},
		{"partial list without the device", func(v *env, f *fleet) {
			l1(f).undecodable, l1(f).hidden = 1, map[string]bool{"L1-d0": true}
			f.clearFaults("L1")
			v.walk(f, time.Minute)
			l1(f).undecodable, l1(f).hidden = 0, nil
		}},
		{"partial list, device's fault kept by the tracker", func(v *env, f *fleet) {
			l1(f).undecodable, l1(f).hidden = 1, map[string]bool{"L1-d0": true}
			v.walk(f, time.Minute)
			l1(f).undecodable, l1(f).hidden = 0, nil
		}},
		// DESIGN.md: only a complete list is evidence, even for a device
		// that decoded without the fault beside entries that did not.
		{"observed without the fault in a partial list", func(v *env, f *fleet) {
			f.clearFaults("L1")
			l1(f).undecodable = 2
			v.walk(f, time.Minute)
			l1(f).undecodable = 0
		}},
		{"absent from complete lists for less than forget_after", func(v *env, f *fleet) {
			l1(f).hidden = map[string]bool{"L1-d0": true}
			f.clearFaults("L1")
			v.walk(f, time.Minute)
			v.walk(f, 24*time.Hour-2*time.Minute)
			l1(f).hidden = nil
		}},
		{"absent, then a restart, then absent again short of forget_after", func(v *env, f *fleet) {
			l1(f).hidden = map[string]bool{"L1-d0": true}
			f.clearFaults("L1")
			v.walk(f, time.Minute)
			v.restart()
			v.walk(f, 12*time.Hour)
			v.restart()
			v.walk(f, 12*time.Hour-time.Nanosecond)
			l1(f).hidden = nil
		}},
		{"restart", func(v *env, _ *fleet) { v.restart() }},
		{"location gone while discovery failed", func(v *env, f *fleet) {
			f.clearFaults("L1")
			s := f.snap(v.clock.Add(time.Minute))
			s.Locations = s.Locations[1:]
			s.Sources[0].Up = false
			v.e.Observe(context.Background(), s)
		}},
		{"snapshot without the location's data (stale)", func(v *env, f *fleet) {
			f.clearFaults("L1")
			s := f.snap(v.clock.Add(time.Minute))
			s.Locations[0] = scrape.LocationStatus{ID: "L1", Stale: true}
			v.e.Observe(context.Background(), s)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, f := exhaust(t)
			tc.glitch(v, f)
			refault(v, f)
			for range 3 {
				if d := v.walk(f, 20*time.Minute); d.Reason != ReasonExhausted {
					t.Fatalf("after the glitch: %+v, want exhausted", d)
				}
			}
			if n := len(v.cmd.Sends()); n != 1 {
				t.Fatalf("%d POSTs for one episode with max_attempts 1", n)
			}
		})
	}
}

// TestEpisodeEndsOnEvidence: the device seen without the fault, or absent
// from complete lists for forget_after (across restarts), ends the
// episode; the next fault starts from attempt 1.
func TestEpisodeEndsOnEvidence(t *testing.T) {
	tests := []struct {
		name     string
		evidence func(v *env, f *fleet)
	}{
		{"observed without the fault", func(v *env, f *fleet) {
			f.clearFaults("L1")
			v.walk(f, time.Minute)
		}},
		{"absent from complete lists for forget_after", func(v *env, f *fleet) {
			f.loc("L1").hidden = map[string]bool{"L1-d0": true}
			f.clearFaults("L1")
			v.walk(f, time.Minute)
			v.walk(f, 24*time.Hour)
			f.loc("L1").hidden = nil
		}},
		{"absent for forget_after across restarts and outages", func(v *env, f *fleet) {
			f.loc("L1").hidden = map[string]bool{"L1-d0": true}
			f.clearFaults("L1")
			v.walk(f, time.Minute)
			v.restart()
			f.loc("L1").up = false
			v.walk(f, 12*time.Hour)
			f.loc("L1").up = true
			v.restart()
			v.walk(f, 12*time.Hour)
			f.loc("L1").hidden = nil
		}},
		{"location gone from a successful walk for forget_after", func(v *env, f *fleet) {
			f.clearFaults("L1")
			for _, dt := range []time.Duration{time.Minute, 24 * time.Hour} {
				s := f.snap(v.clock.Add(dt))
				s.Locations = s.Locations[1:]
				v.e.Observe(context.Background(), s)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, f := exhaust(t)
			tc.evidence(v, f)
			if ep, ok := v.episode("L1-d0", health.HardwareError); ok {
				t.Fatalf("episode %+v left after the evidence", ep)
			}
			refault(v, f)
			if d := v.walk(f, 20*time.Minute); d.Outcome != OutcomeSent || d.Attempt != 1 {
				t.Fatalf("new episode: %+v, want attempt 1 sent", d)
			}
		})
	}
}

// TestEpisodeAbsentSinceIsPersisted: the forget_after clock starts at the
// first complete list without the device and is not restarted by a
// restart; seeing the device with its fault again stops it.
func TestEpisodeAbsentSinceIsPersisted(t *testing.T) {
	v, f := exhaust(t)
	f.loc("L1").hidden = map[string]bool{"L1-d0": true}
	f.clearFaults("L1")
	v.walk(f, time.Minute)
	absent := v.clock.Now()
	v.restart()
	if ep, ok := v.episode("L1-d0", health.HardwareError); !ok || !ep.AbsentSince.Equal(absent) {
		t.Fatalf("episode %+v (found %v) after a restart, want absent since %v", ep, ok, absent)
	}
	if st := v.e.Status(); len(st.Exhausted) != 1 || !st.Exhausted[0].AbsentSince.Equal(absent) {
		t.Fatalf("status: %+v", st.Exhausted)
	}
	f.loc("L1").hidden = nil
	refault(v, f)
	v.walk(f, time.Hour)
	if ep, ok := v.episode("L1-d0", health.HardwareError); !ok || !ep.AbsentSince.IsZero() {
		t.Fatalf("seen with the fault: episode %+v (found %v), want one not absent", ep, ok)
	}
}

// TestVerifyNeedsTheDevice: a finished command is not verified fixed
// while its device is missing from the list; it is once the device is seen.
func TestVerifyNeedsTheDevice(t *testing.T) {
	v := newEnv(t, nil)
	f := newFleet(map[string]int{"L1": 10})
	f.fault("L1", 0, health.StuckTransition, t0.Add(-time.Hour), 5)
	v.walk(f, 0)
	v.cmd.SetState("cmd-1", bikeep.CommandSuccess)
	waitFor(t, "success", func() bool { return commandsTotal(v, health.StuckTransition, ResultSuccess) == 1 })
	f.clearFaults("L1")
	f.loc("L1").hidden = map[string]bool{"L1-d0": true}
	v.walk(f, time.Minute)
	if n := verifiedTotal(v, health.StuckTransition, ResultFixed); n != 0 {
		t.Fatal("verified fixed while the device was missing")
	}
	f.loc("L1").hidden = nil
	v.walk(f, time.Minute)
	if n := verifiedTotal(v, health.StuckTransition, ResultFixed); n != 1 {
		t.Fatalf("fixed = %v once the device was seen, want 1", n)
	}
}

// TestOldLedgerEpisodes: a ledger written while episodes were keyed by
// (device, fault, first seen) may hold two for one fault; they load as one
// episode whose attempts add up, and the ledger keeps one record.
func TestOldLedgerEpisodes(t *testing.T) {
	p := testPolicy(t.TempDir())
	l, err := OpenLedger(p.Ledger)
	mustNil(t, err)
	old := []episodeRecord{
		{DeviceID: "L1-d0", LocationID: "L1", Fault: health.HardwareError, FirstSeen: t0.Add(-3 * time.Hour), Attempts: 1, LastAttempt: t0.Add(-3 * time.Hour)},
		{DeviceID: "L1-d0", LocationID: "L1", Fault: health.HardwareError, FirstSeen: t0.Add(-2 * time.Hour), Attempts: 1, LastAttempt: t0.Add(-2 * time.Hour)},
		{DeviceID: "L1-d1", LocationID: "L1", Fault: health.Unhealthy, FirstSeen: t0.Add(-2 * time.Hour), Attempts: 2, LastAttempt: t0.Add(-2 * time.Hour)},
	}
	for i := range old {
		mustNil(t, l.Apply(context.Background(), store.PutEpisode(old[i])))
	}
	mustNil(t, l.Close())
	clock := newClock()
	v := startEnv(t, p, clock, newCommander(clock.Now))
	st, err := v.ledger.Load(context.Background())
	mustNil(t, err)
	if len(st.Episodes) != 2 {
		t.Fatalf("ledger holds %d episodes, want 2: %+v", len(st.Episodes), st.Episodes)
	}
	ep, ok := v.episode("L1-d0", health.HardwareError)
	if !ok || ep.Attempts != 2 || !ep.FirstSeen.Equal(old[0].FirstSeen) || !ep.LastAttempt.Equal(old[1].LastAttempt) {
		t.Fatalf("merged episode %+v", ep)
	}
	// Three attempts in all: one more, then exhausted.
	f := newFleet(map[string]int{"L1": 10})
	f.fault("L1", 0, health.HardwareError, t0.Add(-10*time.Minute), 3)
	if d := v.walk(f, 0); d.Outcome != OutcomeSent || d.Attempt != 3 {
		t.Fatalf("%+v, want attempt 3 sent", d)
	}
	v.cmd.SetState("cmd-1", bikeep.CommandError)
	waitFor(t, "attempt 3 to end", func() bool { return v.inFlight() == 0 })
	if d := v.walk(f, 20*time.Minute); d.Reason != ReasonExhausted {
		t.Fatalf("%+v, want exhausted", d)
	}
}

// episode returns a copy of the engine's episode for (device, fault).
func (v *env) episode(deviceID string, kind health.FaultKind) (episodeRecord, bool) {
	v.e.mu.Lock()
	defer v.e.mu.Unlock()
	ep := v.e.episodes[faultKey{deviceID, kind}]
	if ep == nil {
		return episodeRecord{}, false
	}
	return *ep, true
}
