package remediate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/health"
)

func commandsTotal(v *env, kind health.FaultKind, result string) float64 {
	return testutil.ToFloat64(v.e.m.commands.WithLabelValues(string(kind), result))
}

func verifiedTotal(v *env, kind health.FaultKind, result string) float64 {
	return testutil.ToFloat64(v.e.m.verified.WithLabelValues(string(kind), result))
}

func (v *env) inFlight() int {
	v.e.mu.Lock()
	defer v.e.mu.Unlock()
	return len(v.e.inflight)
}

// TestCommandResults: a sent command is polled to its end, which is counted
// by result, and the device is free again (cooldown aside).
func TestCommandResults(t *testing.T) {
	tests := []struct {
		name   string
		script func(v *env)
		want   string
	}{
		{"success", func(v *env) { v.cmd.SetState("cmd-1", bikeep.CommandSuccess) }, ResultSuccess},
		{"error", func(v *env) { v.cmd.SetState("cmd-1", bikeep.CommandError) }, ResultError},
		{"not found", func(v *env) {
			v.cmd.mu.Lock()
			delete(v.cmd.states, "cmd-1")
			v.cmd.mu.Unlock()
		}, ResultError},
		{"command_timeout", func(v *env) { v.clock.Add(3 * time.Minute) }, ResultTimeout},
		{"transient errors until command_timeout", func(v *env) {
			v.cmd.mu.Lock()
			v.cmd.getErr["cmd-1"] = errors.New("connection reset")
			v.cmd.mu.Unlock()
			waitFor(v.t, "a failed poll", func() bool { return v.cmd.Gets("cmd-1") > 2 })
			if v.inFlight() != 1 {
				v.t.Fatal("transient poll error ended the command")
			}
			v.clock.Add(3 * time.Minute)
		}, ResultTimeout},
		{"timeout_at", func(v *env) {
			v.cmd.mu.Lock()
			v.cmd.timeouts["cmd-1"] = v.clock.Now().Add(30 * time.Second)
			v.cmd.mu.Unlock()
			v.clock.Add(31 * time.Second)
		}, ResultTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, nil)
			f := newFleet(map[string]int{"L1": 10})
			f.fault("L1", 0, health.LockMismatch, t0.Add(-time.Hour), 5)
			v.e.Observe(context.Background(), f.snap(t0))
			v.quiet()
			waitFor(t, "a poll", func() bool { return v.cmd.Gets("cmd-1") > 0 })
			if v.inFlight() != 1 {
				t.Fatalf("in flight = %d", v.inFlight())
			}
			tc.script(v)
			waitFor(t, "the result", func() bool { return commandsTotal(v, health.LockMismatch, tc.want) == 1 })
			if v.inFlight() != 0 {
				t.Fatalf("still in flight after %s", tc.want)
			}
			if d := v.lastDecision("L1-d0"); d.CommandID != "cmd-1" || d.Result != tc.want {
				t.Errorf("recorded decision %+v", d)
			}
			// Cooldown still applies.
			v.e.Observe(context.Background(), f.snap(v.clock.Now()))
			if d := v.lastDecision("L1-d0"); d.Reason != ReasonCooldown {
				t.Errorf("after the command: %+v, want cooldown", d)
			}
		})
	}
}

// TestSendFailures: a definite refusal frees the device at once (attempt
// and cooldown counted); an ambiguous failure blocks it until the cooldown
// after the send has passed. Nothing is ever re-sent early.
func TestSendFailures(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		inFlight  int
		wantPhase string
	}{
		{"definite 4xx", &bikeep.APIError{StatusCode: 409, ErrorCode: "ERRORS.CONFLICT", CorrelationID: "corr-1"}, 0, ""},
		{"definite 429", &bikeep.RateLimitError{APIError: bikeep.APIError{StatusCode: 429, CorrelationID: "corr-1"}}, 0, ""},
		{"ambiguous", &bikeep.AmbiguousSendError{DeviceID: "L1-d0", Command: "sync-device", Err: context.DeadlineExceeded}, 1, phaseUnknown},
		{"ambiguous 5xx", &bikeep.AmbiguousSendError{Err: &bikeep.APIError{StatusCode: 502}}, 1, phaseUnknown},
		{"transport", errors.New("dial tcp: connection refused"), 1, phaseUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, nil)
			v.cmd.sendErr["L1-d0"] = tc.err
			f := newFleet(map[string]int{"L1": 10})
			f.fault("L1", 0, health.NotResponding, t0.Add(-time.Hour), 5)
			v.e.Observe(context.Background(), f.snap(t0))
			v.quiet()
			if got := commandsTotal(v, health.NotResponding, ResultSendFailed); got != 1 {
				t.Fatalf("send_failed = %v", got)
			}
			if got := v.inFlight(); got != tc.inFlight {
				t.Fatalf("in flight = %d, want %d", got, tc.inFlight)
			}
			d := v.lastDecision("L1-d0")
			if d.Result != ResultSendFailed {
				t.Errorf("decision %+v", d)
			}
			if _, ok := tc.err.(*bikeep.APIError); ok && d.CorrelationID != "corr-1" {
				t.Errorf("correlation id lost: %+v", d)
			}
			// Just before the cooldown: blocked (in flight or cooldown).
			v.clock.Add(15*time.Minute - time.Nanosecond)
			v.e.Observe(context.Background(), f.snap(v.clock.Now()))
			want := ReasonCooldown
			if tc.inFlight == 1 {
				want = ReasonInFlight
			}
			if d := v.lastDecision("L1-d0"); d.Reason != want {
				t.Fatalf("before cooldown: %+v, want %s", d, want)
			}
			// Cooldown passed: the second attempt goes out.
			delete(v.cmd.sendErr, "L1-d0")
			v.clock.Add(time.Nanosecond)
			v.e.Observe(context.Background(), f.snap(v.clock.Now()))
			v.quiet()
			if d := v.lastDecision("L1-d0"); d.Outcome != OutcomeSent || d.Attempt != 2 {
				t.Fatalf("after cooldown: %+v, want attempt 2 sent", d)
			}
			if n := len(v.cmd.Sends()); n != 2 {
				t.Fatalf("%d POSTs, want 2", n)
			}
		})
	}
}

// TestVerify: a finished command is verified on the first walk that
// started after it ended, exactly once.
func TestVerify(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fixed bool
	}{{"fixed", true}, {"not fixed", false}} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, nil)
			f := newFleet(map[string]int{"L1": 10})
			f.walkDur = 10 * time.Second
			f.fault("L1", 0, health.StuckTransition, t0.Add(-time.Hour), 5)
			v.e.Observe(context.Background(), f.snap(t0))
			v.quiet()
			end := v.clock.Add(20 * time.Second)
			v.cmd.SetState("cmd-1", bikeep.CommandSuccess)
			waitFor(t, "success", func() bool { return commandsTotal(v, health.StuckTransition, ResultSuccess) == 1 })
			if tc.fixed {
				f.clearFaults("L1")
			}
			// A walk that ended after the command but started before its end.
			v.e.Observe(context.Background(), f.snap(end.Add(10*time.Second)))
			if n := verifiedTotal(v, health.StuckTransition, ResultFixed) + verifiedTotal(v, health.StuckTransition, ResultNotFixed); n != 0 {
				t.Fatalf("verified on a walk that started at the command's end")
			}
			// Started 1 ns after the end.
			v.e.Observe(context.Background(), f.snap(end.Add(10*time.Second+time.Nanosecond)))
			want, other := ResultFixed, ResultNotFixed
			if !tc.fixed {
				want, other = other, want
			}
			if verifiedTotal(v, health.StuckTransition, want) != 1 || verifiedTotal(v, health.StuckTransition, other) != 0 {
				t.Fatalf("verified: want one %s", want)
			}
			v.e.Observe(context.Background(), f.snap(end.Add(time.Minute)))
			if verifiedTotal(v, health.StuckTransition, want) != 1 {
				t.Fatal("verified twice")
			}
		})
	}
}

// TestPowerCycleAndExhausted: attempts escalate to power_cycle from the
// configured attempt; after max_attempts the exhausted series appears once
// the last command is verified, and vanishes when the fault clears.
func TestPowerCycleAndExhausted(t *testing.T) {
	v := newEnv(t, func(p *config.Remediation) { p.PowerCycleFromAttempt = 2 })
	f := newFleet(map[string]int{"L1": 10})
	f.fault("L1", 0, health.HardwareError, t0.Add(-time.Hour), 5)
	const want = `# HELP fleetd_remediation_exhausted 1 for a fault episode that used all remediation attempts and is still active: a human must look.
# TYPE fleetd_remediation_exhausted gauge
fleetd_remediation_exhausted{alias="A-L1-d0",device_id="L1-d0",fault="hardware_error",location_id="L1"} 1
`
	for attempt := 1; attempt <= 3; attempt++ {
		v.e.Observe(context.Background(), f.snap(v.clock.Now()))
		v.quiet()
		if n := testutil.CollectAndCount(v.reg, "fleetd_remediation_exhausted"); n != 0 {
			t.Fatalf("attempt %d: exhausted while an attempt is pending", attempt)
		}
		sends := v.cmd.Sends()
		if len(sends) != attempt {
			t.Fatalf("attempt %d: %d sends", attempt, len(sends))
		}
		if got, want := sends[attempt-1].Req, (bikeep.CommandRequest{Command: "sync-device", PowerCycle: attempt >= 2}); got != want {
			t.Fatalf("attempt %d: request %+v, want %+v", attempt, got, want)
		}
		v.cmd.SetState(fmt.Sprintf("cmd-%d", attempt), bikeep.CommandError)
		waitFor(t, "error result", func() bool { return v.inFlight() == 0 })
		v.clock.Add(15 * time.Minute)
	}
	// Verification of the last attempt (walk started after its end).
	v.e.Observe(context.Background(), f.snap(v.clock.Now()))
	if d := v.lastDecision("L1-d0"); d.Reason != ReasonExhausted {
		t.Fatalf("%+v, want exhausted", d)
	}
	if err := testutil.GatherAndCompare(v.reg, strings.NewReader(want), "fleetd_remediation_exhausted"); err != nil {
		t.Fatal(err)
	}
	if st := v.e.Status(); len(st.Exhausted) != 1 || st.Exhausted[0].Attempts != 3 {
		t.Fatalf("status exhausted %+v", st.Exhausted)
	}
	f.clearFaults("L1")
	v.clock.Add(time.Minute)
	v.e.Observe(context.Background(), f.snap(v.clock.Now()))
	if err := testutil.GatherAndCompare(v.reg, strings.NewReader(""), "fleetd_remediation_exhausted"); err != nil {
		t.Fatal(err)
	}
	// A new episode starts from attempt 1 (cooldown permitting).
	v.clock.Add(15 * time.Minute)
	f.fault("L1", 0, health.HardwareError, v.clock.Now().Add(-time.Hour), 5)
	v.e.Observe(context.Background(), f.snap(v.clock.Now()))
	v.quiet()
	if d := v.lastDecision("L1-d0"); d.Outcome != OutcomeSent || d.Attempt != 1 || d.PowerCycle {
		t.Fatalf("new episode: %+v", d)
	}
}

// TestDecisionRing: unchanged skips are neither re-recorded nor logged at
// INFO; 5,000 repeats do not flush the ring.
func TestDecisionRing(t *testing.T) {
	v := newEnv(t, func(p *config.Remediation) { p.Enabled = false })
	f := newFleet(map[string]int{"L1": 10})
	f.fault("L1", 0, health.HardwareError, t0, 1)
	f.fault("L1", 1, health.HardwareError, t0, 1)
	for range 2500 {
		v.e.Observe(context.Background(), f.snap(v.clock.Add(time.Second)))
	}
	st := v.e.Status()
	if len(st.Decisions) != 2 {
		t.Fatalf("%d decisions recorded, want 2", len(st.Decisions))
	}
	if got := testutil.ToFloat64(v.e.m.skippedVec.WithLabelValues(ReasonDisabled)); got != 5000 {
		t.Fatalf("disabled = %v, want 5000", got)
	}
	if err := v.e.SetPolicy(testPolicy(t.TempDir())); err == nil || !strings.Contains(err.Error(), "ledger") {
		t.Fatalf("SetPolicy with another ledger path: %v", err)
	}
	p := v.e.policy
	p.Enabled = true
	mustNil(t, v.e.SetPolicy(p))
	v.e.Observe(context.Background(), f.snap(v.clock.Add(time.Second)))
	st = v.e.Status()
	if len(st.Decisions) != 4 || st.Decisions[0].Reason != ReasonTooYoung {
		t.Fatalf("after enabling: %+v", st.Decisions)
	}
}
