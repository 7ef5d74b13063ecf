package main

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/fleetd/fleetd/internal/alerts"
	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/remediate"
	"github.com/fleetd/fleetd/internal/web/status"
)

// commander hands the remediation engine the Bikeep client of the current
// config: a reload that rotates credentials or moves base_url reaches the
// commands too, without rebuilding the engine and its ledger state.
type commander struct {
	cur atomic.Pointer[bikeep.Client]
}

func (c *commander) SendCommand(ctx context.Context, deviceID string, req bikeep.CommandRequest) (*bikeep.Command, error) {
	return c.cur.Load().SendCommand(ctx, deviceID, req)
}

func (c *commander) GetCommand(ctx context.Context, commandID string) (*bikeep.Command, error) {
	return c.cur.Load().GetCommand(ctx, commandID)
}

// set takes the Bikeep client of the config in force.
func (c *commander) set(cl *bikeep.Client) { c.cur.Store(cl) }

// alertRemediator feeds Alertmanager webhook requests into the engine, which
// applies the same gates as to its own walks (and refuses them with reason
// "trigger" unless remediation.trigger is alertmanager or both).
type alertRemediator struct{ engine *remediate.Engine }

func (a alertRemediator) Remediate(ctx context.Context, r alerts.Request) alerts.Result {
	d := a.engine.Request(ctx, remediate.Request{
		DeviceID: r.DeviceID, LocationID: r.LocationID, Fault: health.FaultKind(r.Fault), Source: remediate.SourceAlertmanager,
	})
	return alerts.Result{DeviceID: r.DeviceID, Fault: r.Fault, Outcome: d.Outcome, Reason: d.Reason}
}

// statusRemediation renders the engine's state for the status page, with
// pol, the compiled policy in force, to say which rule excluded a fault.
func statusRemediation(e *remediate.Engine, pol *remediate.Policy) *status.Remediation {
	policy := pol.Config()
	st := e.Status()
	out := &status.Remediation{
		Enabled: st.Enabled, DryRun: st.DryRun, Paused: st.Paused, PauseReason: st.PausedReason,
		Trigger: st.Trigger, InFlight: len(st.InFlight), DeviceState: map[string]string{},
		MinFaultAge: policy.MinFaultAge, Cooldown: policy.Cooldown,
		Rules: pol.Rules(),
	}
	if st.PausedSince != nil {
		out.PausedSince = *st.PausedSince
	}
	for _, s := range st.Storms {
		out.Storms = append(out.Storms, status.Storm{Scope: s.Scope, Since: s.Since, Ratio: s.Ratio})
	}
	for _, x := range st.Exhausted {
		out.Exhausted = append(out.Exhausted, status.Exhausted{
			DeviceID: x.DeviceID, Alias: x.Alias, LocationID: x.LocationID, Fault: string(x.Fault), Attempts: x.Attempts,
		})
	}
	for _, c := range st.InFlight {
		state := fmt.Sprintf("in flight (attempt %d)", c.Attempt)
		if c.State == "unknown" {
			state = fmt.Sprintf("outcome unknown (attempt %d)", c.Attempt)
		}
		out.DeviceState[c.DeviceID] = state
	}
	for _, d := range st.Decisions {
		out.Decisions = append(out.Decisions, status.Decision{
			Time: d.Time, DeviceID: d.DeviceID, Alias: d.Alias, LocationID: d.LocationID, Fault: string(d.Fault),
			Source: d.Source, Outcome: d.Outcome, Reason: d.Reason, Attempt: d.Attempt, PowerCycle: d.PowerCycle,
			CommandID: d.CommandID, Result: d.Result,
		})
	}
	return out
}
