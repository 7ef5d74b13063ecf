package remediate

import (
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/config"
)

// CompilePolicy refuses what the engine could not apply, naming it, so a
// reload fails before anything changes.
func TestCompilePolicyRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*config.Remediation)
		want   string
	}{
		{"blackout without an opening time", func(p *config.Remediation) {
			p.Blackout = []config.Blackout{{Start: "0 2 * * *", Duration: time.Hour}, {Start: "@every 1m", Duration: time.Hour}}
		}, "remediation.blackout[1]"},
		{"unknown blackout zone", func(p *config.Remediation) {
			p.Blackout = []config.Blackout{{Start: "0 2 * * *", Duration: time.Hour, Timezone: "Nowhere/X"}}
		}, "remediation.blackout[0]"},
		{"trigger", func(p *config.Remediation) { p.Trigger = "cron" }, "trigger"},
		{"max attempts", func(p *config.Remediation) { p.MaxAttempts = 0 }, "max_attempts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPolicy(t.TempDir())
			tc.mutate(&p)
			if _, err := CompilePolicy(p); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CompilePolicy = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

// ApplyPolicy puts the whole compiled policy in force at once: its
// blackout windows, its exclusions and its switches.
func TestApplyPolicy(t *testing.T) {
	v := newEnv(t, nil)
	now := v.clock.Now()
	p := testPolicy(t.TempDir())
	p.DryRun = true
	p.Exclude.Locations = []string{"L9"}
	p.Blackout = []config.Blackout{{Start: "* * * * *", Duration: time.Hour, Timezone: "UTC"}}
	pol, err := CompilePolicy(p)
	if err != nil {
		t.Fatal(err)
	}
	blackout := func() bool {
		v.e.mu.Lock()
		defer v.e.mu.Unlock()
		return v.e.passLocked(now).blackout
	}
	if blackout() {
		t.Fatal("blackout before the policy applied")
	}
	v.e.ApplyPolicy(pol)
	if !blackout() || !v.e.Status().DryRun {
		t.Error("the applied policy is not in force")
	}
	v.e.mu.Lock()
	excluded := v.e.rules.Excluded("L9", nil, nil)
	v.e.mu.Unlock()
	if !excluded {
		t.Error("the applied exclusions are not in force")
	}
	if pol.Config().Ledger != p.Ledger {
		t.Error("Config does not give the section back")
	}
	if v.e.policy.Ledger != v.p.Ledger {
		t.Errorf("the policy names ledger %q, the engine has %q open", v.e.policy.Ledger, v.p.Ledger)
	}
}
