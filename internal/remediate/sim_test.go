package remediate

import (
	"context"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/scrape"
	"github.com/fleetd/fleetd/internal/secret"
	"github.com/fleetd/fleetd/internal/sim"
)

// TestAgainstSimulator: a recoverable fault injected into the simulator is
// seen by real walks (real client, real scrape), gets exactly one
// sync-device, and is verified fixed on the walk after the command ended.
func TestAgainstSimulator(t *testing.T) {
	o := sim.DefaultOptions()
	o.Locations, o.DevicesPerLocation = 2, 12
	o.Latency, o.FaultRate, o.CureRate, o.ErrorRate = 0, 0, 0, 0
	o.SyncCureProbability = 1
	o.CommandStepDelay = 20 * time.Millisecond
	s, err := sim.New(o)
	mustNil(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url, err := s.Start(ctx, "127.0.0.1:0")
	mustNil(t, err)

	loc := s.Locations()[0].ID
	var target string
	for _, d := range s.Devices(loc) {
		mustNil(t, s.SetFault(d.ID, sim.FaultNone))
		if target == "" && d.CanSync() && len(d.Tags) == 0 {
			target = d.ID
		}
	}
	if target == "" {
		t.Fatal("no syncable device in the simulated location")
	}
	mustNil(t, s.SetFault(target, sim.FaultHardwareError))

	bk, err := bikeep.NewClient(url, bikeep.WithClientCredentials(url+"/oauth2/token", sim.DefaultClientID, secret.String(sim.DefaultClientSecret)))
	mustNil(t, err)
	p := testPolicy(t.TempDir())
	p.MinFaultAge = 0
	l, err := OpenLedger(p.Ledger)
	mustNil(t, err)
	defer l.Close()
	e, err := New(Options{Policy: p, Commander: bk, Ledger: l, Logger: testLogger(t), PollInterval: 10 * time.Millisecond})
	mustNil(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	defer func() { stop(); <-done }()

	sc, err := scrape.New(scrape.Options{Devices: bk, LocationIDs: []string{loc}, Concurrency: 2,
		Health:     health.Params{LockMismatchGrace: time.Minute, TransitionGrace: time.Minute},
		StaleAfter: time.Minute, OnDeviceWalk: e.Observe})
	mustNil(t, err)
	walk := func() {
		t.Helper()
		if err := sc.WalkDevices(ctx); err != nil {
			t.Fatalf("walk: %v", err)
		}
	}
	walk() // first sight: too young (one walk)
	if st := s.Stats(); st.CommandsTotal != 0 {
		t.Fatalf("command after one walk: %+v", st.Commands)
	}
	walk() // second walk: sent
	v := &env{t: t, e: e}
	waitFor(t, "the command to finish", func() bool {
		st := e.Status()
		return len(st.InFlight) == 0 && len(st.Decisions) > 0 && st.Decisions[0].Result != ""
	})
	d := e.Status().Decisions[0]
	if d.DeviceID != target || d.Outcome != OutcomeSent || d.Result != ResultSuccess || d.CommandID == "" {
		t.Fatalf("decision %+v", d)
	}
	walk() // started after the command ended: verified
	if got := verifiedTotal(v, health.HardwareError, ResultFixed); got != 1 {
		t.Fatalf("verified fixed = %v; decisions %+v", got, e.Status().Decisions)
	}
	st := s.Stats()
	if st.CommandsTotal != 1 || st.Commands[target][bikeep.CmdSyncDevice] != 1 {
		t.Fatalf("simulator saw %d commands: %+v", st.CommandsTotal, st.Commands)
	}
	if len(sc.Snapshot().Faults) != 0 {
		t.Fatalf("fault not cured: %+v", sc.Snapshot().Faults)
	}
}
