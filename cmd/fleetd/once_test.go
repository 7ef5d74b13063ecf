package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/remediate"
	"github.com/fleetd/fleetd/internal/remediate/policy"
	"github.com/fleetd/fleetd/internal/scrape"
	"github.com/fleetd/fleetd/internal/sim"
)

// TestPageReason: once pages for dead devices and for recoverable faults
// that remediation cannot or may not touch, as the gate table says.
func TestPageReason(t *testing.T) {
	now := time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)
	p := config.Default().Remediation
	p.Exclude = config.Exclude{Locations: []string{"L9"}, DeviceTypes: []string{"BIKE_HOUSE_DOOR"}, Tags: []string{config.NoAutoRemediationTag}}
	rules := policy.Compile(p)
	syncable := map[string]string{bikeep.CmdSyncDevice: "/c"}
	tests := []struct {
		name string
		loc  string
		dev  *bikeep.Device // nil: not in the snapshot
		kind health.FaultKind
		dead bool
		want string
	}{
		{"dead", "L1", &bikeep.Device{Commands: syncable}, health.Dead, true, "dead"},
		{"long dead tickets, does not page", "L1", &bikeep.Device{Commands: syncable}, health.LongDead, true, ""},
		{"hardware fault of a dead device", "L1", &bikeep.Device{Commands: syncable}, health.HardwareError, true, ""},
		{"remediation will try", "L1", &bikeep.Device{Type: bikeep.TypeLocker, Commands: syncable}, health.Unhealthy, false, ""},
		{"device not in the snapshot", "L1", nil, health.Unhealthy, false, ""},
		{"no sync-device", "L1", &bikeep.Device{Commands: map[string]string{bikeep.CmdLock: "/c"}}, health.Unhealthy, false, "sync-device unavailable"},
		{"asleep out of reach", "L1", &bikeep.Device{Commands: syncable, SleepState: bikeep.SleepDeep, PowerSaveStrategy: bikeep.PowerLocalWakeup}, health.HardwareError, false, "sync-device unavailable"},
		{"unsupported and excluded", "L9", &bikeep.Device{}, health.Unhealthy, false, "sync-device unavailable"},
		{"excluded location", "L9", &bikeep.Device{Commands: syncable}, health.Unhealthy, false, "excluded from remediation"},
		{"excluded type", "L1", &bikeep.Device{Type: bikeep.TypeBikeHouseDoor, Commands: syncable}, health.LockMismatch, false, "excluded from remediation"},
		{"excluded tag", "L1", &bikeep.Device{Commands: syncable, Tags: []string{"a", config.NoAutoRemediationTag}}, health.Unhealthy, false, "excluded from remediation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap := &scrape.Snapshot{Locations: []scrape.LocationStatus{{ID: tc.loc, Up: true}}}
			f := health.Fault{Kind: tc.kind, DeviceID: "d1", LocationID: tc.loc, Recoverable: tc.kind.RecoverableKind() && !tc.dead,
				FirstSeen: now.Add(-time.Hour), Walks: 5}
			if tc.dev != nil {
				tc.dev.ID = "d1"
				f.DeviceType = tc.dev.Type
				snap.Locations[0].Devices = bikeep.Records(*tc.dev)
			}
			if got := pageReason(snap, f, rules, now); got != tc.want {
				t.Fatalf("pageReason = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestOnceAgreesWithEngineOnDemo: on every fault of the demo, once's page
// reason follows from policy.Explain, and the engine decides what Explain
// says (the demo runs dry, with door devices excluded; a fresh engine has
// no history, so the gates that depend on it cannot differ).
func TestOnceAgreesWithEngineOnDemo(t *testing.T) {
	simURL := startSim(t, func(o *sim.Options) { o.Locations, o.DevicesPerLocation = 6, 10 },
		func(s *sim.Sim) { injectDemoFaults(s, slog.New(slog.DiscardHandler)) })
	dir := t.TempDir()
	yml := strings.Replace(demoConfig(simURL, filepath.Join(dir, "ledger.db"), 1), "  command_timeout: 1m\n",
		"  command_timeout: 1m\n  dry_run: true\n  exclude: {device_types: [BIKE_HOUSE_DOOR]}\n", 1)
	path := filepath.Join(dir, "fleetd.yml")
	write(t, path, yml)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := newScraper(cfg, slog.New(slog.DiscardHandler), scraperDeps{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 2 { // two walks, so faults are not all too young by walk count
		_ = sc.WalkDevices(ctx) // one location fails on purpose
	}
	snap := sc.Snapshot()
	for _, f := range snap.Faults {
		if f.Recoverable && f.DeviceType != "BIKE_HOUSE_DOOR" {
			// Exclude one faulty location too, whichever the simulator made.
			cfg.Remediation.Exclude.Locations = []string{f.LocationID}
			break
		}
	}
	l, err := remediate.OpenLedger(cfg.Remediation.Ledger)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	now := time.Now().Add(time.Hour) // every fault older than min_fault_age
	e, err := remediate.New(remediate.Options{Policy: cfg.Remediation, Commander: &commander{}, Ledger: l, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	e.Observe(ctx, snap)
	decisions := map[string]remediate.Decision{}
	for _, d := range e.Status().Decisions {
		if _, ok := decisions[d.DeviceID+"/"+string(d.Fault)]; !ok {
			decisions[d.DeviceID+"/"+string(d.Fault)] = d // newest first
		}
	}
	rules := policy.Compile(cfg.Remediation)
	pages := map[string]bool{}
	for _, f := range snap.Faults {
		dev, _ := snap.Device(f.LocationID, f.DeviceID)
		x := policy.Explain(rules, &f, dev, now)
		d, ok := decisions[f.DeviceID+"/"+string(f.Kind)]
		switch {
		case !ok:
			t.Errorf("%s %s: the engine made no decision", f.DeviceID, f.Kind)
		case d.Outcome != x.Outcome || (x.Outcome == policy.OutcomeSkipped && d.Reason != x.Reason):
			t.Errorf("%s %s: Explain says %s %q, the engine %s %q", f.DeviceID, f.Kind, x.Outcome, x.Reason, d.Outcome, d.Reason)
		}
		why := pageReason(snap, f, rules, now)
		pages[why] = true
		want := map[string]bool{"": true}
		switch {
		case f.Kind == health.Dead:
			want = map[string]bool{"dead": true}
		case f.Recoverable && x.Refuses(policy.ReasonUnsupported):
			want = map[string]bool{"sync-device unavailable": true}
		case f.Recoverable && x.Refuses(policy.ReasonExcluded):
			want = map[string]bool{"excluded from remediation": true}
		}
		if !want[why] {
			t.Errorf("%s %s: once says %q, Explain refuses %v", f.DeviceID, f.Kind, why, x.Refusals)
		}
	}
	if len(snap.Faults) < 5 || !pages["dead"] || !pages[""] || !pages["excluded from remediation"] {
		t.Fatalf("the demo walk gave %d faults and page reasons %v; want dead, excluded and quiet ones at least", len(snap.Faults), pages)
	}
	t.Logf("%d faults, page reasons %v", len(snap.Faults), pages)
}
