package remediate

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/remediate/policy"
)

// TestExplainAgreesWithEngine: what policy.Explain says of each fault of a
// mixed fleet — the answer `fleetd once` prints — is what a fresh engine
// decides, up to the gates that depend on the engine's history (storms,
// attempts, cooldowns, the bucket, the in-flight cap).
func TestExplainAgreesWithEngine(t *testing.T) {
	v := newEnv(t, func(p *config.Remediation) {
		p.Exclude.Locations = []string{"L3"}
		p.Exclude.DeviceTypes = []string{string(bikeep.TypeBikeHouseDoor)}
		p.Rate = config.Rate{Count: 3, Per: time.Minute}
		p.MaxInFlight = 3
		p.Storm.MaxFaultyRatio = 1
	})
	f := newFleet(map[string]int{"L1": 10, "L2": 10, "L3": 4})
	old := t0.Add(-time.Hour)
	kinds := []health.FaultKind{health.Unhealthy, health.HardwareError, health.NotResponding, health.StuckTransition,
		health.LockMismatch, health.Dead, health.LongDead, health.UnknownState}
	for _, loc := range []string{"L1", "L2", "L3"} {
		for i := range len(f.loc(loc).devices) {
			f.fault(loc, i, kinds[i%len(kinds)], old, 3)
		}
	}
	f.dev("L1", 1).Tags = []string{config.NoAutoRemediationTag}
	f.dev("L1", 2).Commands = map[string]string{bikeep.CmdUnlock: "/c"}
	d := f.dev("L2", 0)
	d.SleepState, d.PowerSaveStrategy = bikeep.SleepDeep, bikeep.PowerLocalWakeup
	f.dev("L2", 1).Type = bikeep.TypeBikeHouseDoor
	f.loc("L2").faults[1].DeviceType = bikeep.TypeBikeHouseDoor
	f.loc("L2").faults[2].Walks = 1
	f.loc("L2").faults[3].Recoverable = false // a hardware fault on a dead device

	snap := f.snap(t0)
	v.e.Observe(context.Background(), snap)
	v.quiet()
	rules := policy.Compile(v.e.policy)
	history := []string{policy.ReasonStorm, policy.ReasonInFlight, policy.ReasonCooldown, policy.ReasonExhausted,
		policy.ReasonMaxInFlight, policy.ReasonRateLimited}
	seen := map[string]bool{}
	for _, flt := range snap.Faults {
		dev, _ := snap.Device(flt.LocationID, flt.DeviceID)
		x := policy.Explain(rules, &flt, dev, t0)
		got := v.lastDecision(flt.DeviceID)
		seen[x.Reason] = true
		switch {
		case x.Outcome == policy.OutcomeSent:
			if got.Outcome != OutcomeSent && !slices.Contains(history, got.Reason) {
				t.Errorf("%s %s: Explain says send, the engine %s %q", flt.DeviceID, flt.Kind, got.Outcome, got.Reason)
			}
		case got.Outcome != OutcomeSkipped || got.Reason != x.Reason:
			t.Errorf("%s %s: Explain says %s %q, the engine %s %q", flt.DeviceID, flt.Kind, x.Outcome, x.Reason, got.Outcome, got.Reason)
		}
	}
	for _, r := range []string{"", policy.ReasonExcluded, policy.ReasonNotRecoverable, policy.ReasonUnsupported, policy.ReasonTooYoung} {
		if !seen[r] {
			t.Errorf("the fleet exercises no fault Explain answers %q", r)
		}
	}
}
