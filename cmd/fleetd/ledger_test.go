package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/sim"
)

// A ledger holding commands in flight, truncated to 0 bytes, stops start-up
// with an error naming the file; the file stays as it was and no device
// receives another command.
func TestEmptiedLedgerStopsStartup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	var s *sim.Sim
	simURL := startSim(t, func(o *sim.Options) {
		o.Locations, o.DevicesPerLocation, o.Seed = 4, 10, 7
		o.CommandStepDelay = 3 * time.Second
		o.CommandTimeout = time.Minute
	}, func(sm *sim.Sim) {
		s = sm
		n := 0
		for _, l := range sm.Locations() {
			for _, d := range sm.Devices(l.ID) {
				if d.CanSync() && n < 3 && sm.SetFault(d.ID, sim.FaultUnhealthy) == nil {
					n++
					break
				}
			}
		}
		if n < 3 {
			t.Fatal("not enough syncable devices")
		}
	})
	dir := t.TempDir()
	_, _, kill := startFleetd(t, simURL, dir, "1s")
	waitUntil(t, "every command sent", func() bool { return s.Stats().CommandsTotal == 3 })
	kill()
	ledger := filepath.Join(dir, "ledger.db")
	if err := os.Truncate(ledger, 0); err != nil {
		t.Fatal(err)
	}

	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := runCLI("run", "--config", remediationConfig(t, dir, simURL, "1s", ""),
			"--web.listen-address", "127.0.0.1:0", "--log.level", "error")
		done <- result{code, out, errOut}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("fleetd started on an emptied ledger")
	}
	if r.code == 0 || !strings.Contains(r.stderr, ledger) || !strings.Contains(r.stderr, "empty") ||
		!strings.Contains(r.stderr, "move it aside") {
		t.Fatalf("exit %d, stderr:\n%s\nwant an error naming %s, saying it is empty and what to do", r.code, r.stderr, ledger)
	}
	if st, err := os.Stat(ledger); err != nil || st.Size() != 0 {
		t.Fatalf("the emptied ledger was touched: %v, %v", st, err)
	}
	if n := s.Stats().CommandsTotal; n != 3 {
		t.Fatalf("the simulator saw %d commands, want the 3 sent before the crash", n)
	}
}
