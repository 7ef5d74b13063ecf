package remediate

import (
	"fmt"
	"time"

	"github.com/fleetd/fleetd/internal/config"
)

// Policy is a remediation: section compiled once, when the config is
// loaded: exclusions as sets and blackout windows parsed, so no gate
// parses anything. An Engine applies a Policy whole (ApplyPolicy).
type Policy struct {
	cfg     config.Remediation
	excl    exclusions
	windows []config.Window
}

// CompilePolicy checks p and compiles it. It is the fallible half of a
// reload; ApplyPolicy, the other half, cannot fail.
func CompilePolicy(p config.Remediation) (*Policy, error) {
	if err := checkPolicy(p); err != nil {
		return nil, err
	}
	windows := make([]config.Window, 0, len(p.Blackout))
	for i, b := range p.Blackout {
		w, err := b.Window()
		if err != nil {
			return nil, fmt.Errorf("remediate: remediation.blackout[%d]: %w", i, err)
		}
		windows = append(windows, w)
	}
	return &Policy{cfg: p, excl: newExclusions(p.Exclude), windows: windows}, nil
}

// Config returns the remediation: section p was compiled from.
func (p *Policy) Config() config.Remediation { return p.cfg }

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
	e.limiter.SetLimitAt(now, p.cfg.Rate.Limit())
	e.limiter.SetBurstAt(now, burst(p.cfg))
	e.excl, e.windows = p.excl, p.windows
	ledger := e.policy.Ledger
	e.policy = p.cfg
	e.policy.Ledger = ledger // the ledger open is the one in force
}
