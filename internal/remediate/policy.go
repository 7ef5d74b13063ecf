package remediate

import (
	"fmt"
	"time"

	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/remediate/policy"
)

// Policy is a remediation: section compiled once, when the config is
// loaded: the gates' rules with exclusions as sets and blackout windows
// parsed, so no gate parses anything. An Engine applies a Policy whole
// (ApplyPolicy).
type Policy struct {
	rules *policy.Rules
}

// CompilePolicy checks p and compiles it. It is the fallible half of a
// reload; ApplyPolicy, the other half, cannot fail.
func CompilePolicy(p config.Remediation) (*Policy, error) {
	if err := checkPolicy(p); err != nil {
		return nil, err
	}
	rules, err := policy.CompileChecked(p)
	if err != nil {
		return nil, fmt.Errorf("remediate: %w", err)
	}
	return &Policy{rules: rules}, nil
}

// Config returns the remediation: section p was compiled from.
func (p *Policy) Config() config.Remediation { return p.rules.Remediation }

// Rules are the compiled rules, for a caller that asks the policy core what
// it would decide (the status page's "excluded by") instead of matching the
// config again.
func (p *Policy) Rules() *policy.Rules { return p.rules }

// ApplyPolicy makes p the engine's policy. The ledger stays the one the
// engine was built with (a daemon refuses a reload that moves it before it
// applies anything); the rate limiter keeps its tokens.
func (e *Engine) ApplyPolicy(p *Policy) {
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.applyPolicyLocked(now, p)
}

func (e *Engine) applyPolicyLocked(now time.Time, p *Policy) {
	cfg := p.rules.Remediation
	e.limiter.SetLimitAt(now, cfg.Rate.Limit())
	e.limiter.SetBurstAt(now, burst(cfg))
	e.rules = p.rules
	ledger := e.policy.Ledger
	e.policy = cfg
	e.policy.Ledger = ledger // the ledger open is the one in force
}
