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
		{"undocumented state until command_timeout", func(v *env) {
			v.cmd.SetState("cmd-1", "EXPLODED")
			n := v.cmd.Gets("cmd-1")
			waitFor(v.t, "a poll answering EXPLODED", func() bool { return v.cmd.Gets("cmd-1") > n+1 })
			v.clock.Add(3 * time.Minute)
		}, ResultUnknown},
		{"undocumented state, then a documented end", func(v *env) {
			v.cmd.SetState("cmd-1", "EXPLODED")
			n := v.cmd.Gets("cmd-1")
			waitFor(v.t, "a poll answering EXPLODED", func() bool { return v.cmd.Gets("cmd-1") > n+1 })
			v.cmd.SetState("cmd-1", bikeep.CommandSuccess)
		}, ResultSuccess},
		{"undocumented state, then a documented one, then timeout", func(v *env) {
			v.cmd.SetState("cmd-1", "EXPLODED")
			n := v.cmd.Gets("cmd-1")
			waitFor(v.t, "a poll answering EXPLODED", func() bool { return v.cmd.Gets("cmd-1") > n+1 })
			v.cmd.SetState("cmd-1", bikeep.CommandReceived)
			n = v.cmd.Gets("cmd-1")
			waitFor(v.t, "a poll answering RECEIVED", func() bool { return v.cmd.Gets("cmd-1") > n+1 })
			v.clock.Add(3 * time.Minute)
		}, ResultTimeout},
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
// after the send has passed. Nothing is ever re-sent early. (A throttled
// POST is no attempt at all: TestThrottledPOST.)
func TestSendFailures(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		inFlight  int
		wantPhase string
	}{
		{"definite 4xx", &bikeep.APIError{StatusCode: 409, ErrorCode: "ERRORS.CONFLICT", CorrelationID: "corr-1"}, 0, ""},
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

// TestUndocumentedCommandState: a poll answering a state the API does not
// document is logged once per command, with the value capped, and the
// command ends as unknown, counted as such.
func TestUndocumentedCommandState(t *testing.T) {
	hostile := "EXPLODED" + strings.Repeat("\xff", 3) + strings.Repeat("X", 10_000)
	v := newEnv(t, nil)
	f := newFleet(map[string]int{"L1": 10})
	f.fault("L1", 0, health.LockMismatch, t0.Add(-time.Hour), 5)
	v.e.Observe(context.Background(), f.snap(t0))
	v.quiet()
	v.cmd.SetState("cmd-1", bikeep.CommandStateValue(hostile))
	waitFor(t, "several polls", func() bool { return v.cmd.Gets("cmd-1") > 5 })
	v.clock.Add(3 * time.Minute)
	waitFor(t, "the result", func() bool { return commandsTotal(v, health.LockMismatch, ResultUnknown) == 1 })
	if got := commandsTotal(v, health.LockMismatch, ResultTimeout); got != 0 {
		t.Errorf("timeout = %v, want 0: the result must say the state was unknown", got)
	}
	lines := v.logs.Lines("remediation command reported an undocumented state")
	if len(lines) != 1 {
		t.Fatalf("%d log lines for the undocumented state, want exactly 1: %q", len(lines), lines)
	}
	if !strings.Contains(lines[0], `state="EXPLODED`) || !strings.Contains(lines[0], "command_id=cmd-1") {
		t.Errorf("log line lacks the value or the command: %s", lines[0])
	}
	if len(lines[0]) > 1024 || strings.Contains(lines[0], strings.Repeat("X", 100)) {
		t.Errorf("the vendor's value is not capped (%d bytes): %.200s", len(lines[0]), lines[0])
	}
	if d := v.lastDecision("L1-d0"); d.Result != ResultUnknown {
		t.Errorf("recorded decision %+v, want result unknown", d)
	}
}

// TestThrottledPOST: a POST the vendor throttled (429, or an error code
// saying so) created no command, so it is no attempt: the device keeps its
// attempt count and cooldown, every send backs off (Retry-After, else
// exponential with jitter), it is counted as skipped{throttled} and logged
// with the correlation id.
func TestThrottledPOST(t *testing.T) {
	tests := []struct {
		name string
		err  error
		// the backoff lies in [min, max]
		min, max time.Duration
	}{
		{"429 with Retry-After", &bikeep.RateLimitError{APIError: bikeep.APIError{StatusCode: 429, ErrorCode: "ERRORS.TOO_MANY_REQUESTS", CorrelationID: "corr-1"},
			RetryAfter: 40 * time.Second}, 40 * time.Second, 40 * time.Second},
		{"429 without Retry-After", &bikeep.RateLimitError{APIError: bikeep.APIError{StatusCode: 429, CorrelationID: "corr-1"}},
			throttleBaseBackoff / 2, throttleBaseBackoff},
		{"throttled error code", &bikeep.APIError{StatusCode: 400, ErrorCode: "ERRORS.LOCK_COMMAND_THROTTLED", CorrelationID: "corr-1"},
			throttleBaseBackoff / 2, throttleBaseBackoff},
		{"Retry-After above the cap", &bikeep.RateLimitError{APIError: bikeep.APIError{StatusCode: 429, CorrelationID: "corr-1"},
			RetryAfter: 24 * time.Hour}, throttleMaxBackoff, throttleMaxBackoff},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t, nil)
			f := newFleet(map[string]int{"L1": 10})
			f.fault("L1", 0, health.NotResponding, t0.Add(-time.Hour), 5)
			// Attempt 1 goes through and ends; the cooldown passes.
			v.e.Observe(context.Background(), f.snap(t0))
			v.quiet()
			v.cmd.SetState("cmd-1", bikeep.CommandError)
			waitFor(t, "attempt 1 to end", func() bool { return v.inFlight() == 0 })
			first := v.cmd.Sends()[0].At
			// Attempt 2 is throttled.
			v.cmd.sendErr["L1-d0"] = tc.err
			at := v.clock.Add(15 * time.Minute)
			v.e.Observe(context.Background(), f.snap(at))
			v.quiet()
			if n := len(v.cmd.Sends()); n != 2 {
				t.Fatalf("%d POSTs, want 2", n)
			}
			ep, _ := v.episode("L1-d0", health.NotResponding)
			v.e.mu.Lock()
			last, inflight := v.e.devices["L1-d0"], len(v.e.inflight)
			v.e.mu.Unlock()
			// The cooldown of attempt 1 had passed (and its entry expired);
			// the throttled POST must not start a new one.
			if ep.Attempts != 1 || !ep.LastAttempt.Equal(first) || !(last.IsZero() || last.Equal(first)) || inflight != 0 {
				t.Fatalf("after the throttled POST: episode %+v, last send %v, in flight %d; want attempt 1 of %v and no new cooldown", ep, last, inflight, first)
			}
			if got := commandsTotal(v, health.NotResponding, ResultSendFailed); got != 0 {
				t.Errorf("send_failed = %v: a throttled POST is no command", got)
			}
			if got := testutil.ToFloat64(v.e.m.skippedVec.WithLabelValues(ReasonThrottled)); got != 1 {
				t.Errorf("skipped{throttled} = %v, want 1", got)
			}
			if d := v.lastDecision("L1-d0"); d.Outcome != OutcomeSkipped || d.Reason != ReasonThrottled || d.CorrelationID != "corr-1" || d.Attempt != 1 {
				t.Errorf("recorded decision %+v", d)
			}
			lines := v.logs.Lines("remediation command throttled by the vendor; not an attempt, backing off")
			if len(lines) != 1 || !strings.Contains(lines[0], "correlation_id=corr-1") {
				t.Errorf("throttle log lines %q, want one with the correlation id", lines)
			}
			// The backoff is fleet-wide: another device's fault waits too.
			delete(v.cmd.sendErr, "L1-d0")
			f.fault("L1", 1, health.Unhealthy, t0.Add(-time.Hour), 5)
			v.clock.Set(at.Add(tc.min - time.Nanosecond))
			v.e.Observe(context.Background(), f.snap(v.clock.Now()))
			v.quiet()
			for _, id := range []string{"L1-d0", "L1-d1"} {
				if d := v.lastDecision(id); d.Reason != ReasonThrottled {
					t.Fatalf("%s during the backoff: %+v, want throttled", id, d)
				}
			}
			v.clock.Set(at.Add(tc.max))
			v.e.Observe(context.Background(), f.snap(v.clock.Now()))
			v.quiet()
			if d := v.lastDecision("L1-d0"); d.Outcome != OutcomeSent || d.Attempt != 2 {
				t.Fatalf("after the backoff: %+v, want attempt 2 sent", d)
			}
			if n := len(v.cmd.Sends()); n != 4 {
				t.Fatalf("%d POSTs, want 4", n)
			}
		})
	}
}

// TestThrottledFirstAttempt: a throttled first POST leaves no episode and
// no cooldown behind, on disk either.
func TestThrottledFirstAttempt(t *testing.T) {
	v := newEnv(t, nil)
	v.cmd.sendErr["L1-d0"] = &bikeep.RateLimitError{APIError: bikeep.APIError{StatusCode: 429}}
	f := newFleet(map[string]int{"L1": 10})
	f.fault("L1", 0, health.NotResponding, t0.Add(-time.Hour), 5)
	v.e.Observe(context.Background(), f.snap(t0))
	v.quiet()
	st, err := v.ledger.Load(context.Background())
	mustNil(t, err)
	if len(st.Episodes) != 0 || len(st.Devices) != 0 || len(st.Commands) != 0 {
		t.Fatalf("ledger after a throttled first POST: %+v", st)
	}
	v.restart()
	delete(v.cmd.sendErr, "L1-d0")
	v.clock.Add(throttleBaseBackoff) // a restart forgets the backoff; the vendor's own limit still holds
	v.e.Observe(context.Background(), f.snap(v.clock.Now()))
	v.quiet()
	if d := v.lastDecision("L1-d0"); d.Outcome != OutcomeSent || d.Attempt != 1 {
		t.Fatalf("%+v, want attempt 1 sent", d)
	}
}

// TestThrottleBackoff: Retry-After wins (capped); otherwise the wait
// doubles per consecutive throttle, jittered within its upper half, capped.
func TestThrottleBackoff(t *testing.T) {
	for _, tc := range []struct {
		n          int
		retryAfter time.Duration
		min, max   time.Duration
	}{
		{1, 0, 2500 * time.Millisecond, 5 * time.Second},
		{2, 0, 5 * time.Second, 10 * time.Second},
		{4, 0, 20 * time.Second, 40 * time.Second},
		{30, 0, throttleMaxBackoff / 2, throttleMaxBackoff},
		{1, 7 * time.Second, 7 * time.Second, 7 * time.Second},
		{9, time.Hour, throttleMaxBackoff, throttleMaxBackoff},
	} {
		t.Run(fmt.Sprintf("n=%d,retry_after=%v", tc.n, tc.retryAfter), func(t *testing.T) {
			for range 200 {
				if d := throttleBackoff(tc.n, tc.retryAfter); d < tc.min || d > tc.max {
					t.Fatalf("backoff %v outside [%v, %v]", d, tc.min, tc.max)
				}
			}
		})
	}
}

// TestThrottleEscalates: consecutive throttled POSTs double the backoff; an
// answer without throttling resets it.
func TestThrottleEscalates(t *testing.T) {
	v := newEnv(t, nil)
	f := newFleet(map[string]int{"L1": 20}) // three faulty devices are no storm
	f.fault("L1", 0, health.NotResponding, t0.Add(-time.Hour), 5)
	throttle := &bikeep.RateLimitError{APIError: bikeep.APIError{StatusCode: 429}}
	v.cmd.sendErr["L1-d0"] = throttle
	backoff := func() time.Duration {
		v.e.mu.Lock()
		defer v.e.mu.Unlock()
		return v.e.backoffUntil.Sub(v.clock.Now())
	}
	within := func(what string, lo, hi time.Duration) {
		t.Helper()
		if d := backoff(); d < lo || d > hi {
			t.Fatalf("%s: backoff %v, want within [%v, %v]", what, d, lo, hi)
		}
	}
	v.walk(f, 0)
	within("first throttle", 2500*time.Millisecond, 5*time.Second)
	v.walk(f, 5*time.Second)
	within("second consecutive throttle", 5*time.Second, 10*time.Second)
	delete(v.cmd.sendErr, "L1-d0")
	f.fault("L1", 1, health.NotResponding, t0.Add(-time.Hour), 5)
	v.walk(f, 10*time.Second) // both devices' POSTs go out and create commands
	if n := len(v.cmd.Sends()); n != 4 {
		t.Fatalf("%d POSTs, want 4", n)
	}
	v.cmd.sendErr["L1-d2"] = throttle
	f.fault("L1", 2, health.NotResponding, t0.Add(-time.Hour), 5)
	v.walk(f, time.Second)
	if n := len(v.cmd.Sends()); n != 5 {
		t.Fatalf("%d POSTs, want 5", n)
	}
	within("a throttle after an accepted POST", 2500*time.Millisecond, 5*time.Second)
}
