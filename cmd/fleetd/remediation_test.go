package main

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/sim"
)

const remediationConfigTmpl = `
bikeep:
  base_url: SIM
  token_url: SIM/oauth2/token
  client_id: fleetd-demo
  client_secret: fleetd-demo-secret
  concurrency: 4
  request_timeout: 5s
schedule:
  devices: "@every 1s"
health:
  lock_mismatch_grace: 1s
  transition_grace: 1m
  stale_after: 1m
remediation:
  enabled: true
  min_fault_age: 1s
  cooldown: COOLDOWN
  max_attempts: 3
  power_cycle_from_attempt: 3
  rate: 20/s
  max_in_flight: 10
  command_timeout: 1m
  storm: {max_faulty_ratio: 0.6, min_devices: 8, cooldown: 10s}
  ledger: LEDGER
`

// remediationConfig writes dir/fleetd.yml from remediationConfigTmpl with
// its ledger in dir; extra is appended to the remediation section.
func remediationConfig(t *testing.T, dir, simURL, cooldown, extra string) string {
	t.Helper()
	cfg := filepath.Join(dir, "fleetd.yml")
	write(t, cfg, strings.NewReplacer("SIM", simURL, "LEDGER", filepath.Join(dir, "ledger.db"), "COOLDOWN", cooldown).Replace(remediationConfigTmpl)+extra)
	return cfg
}

// startFleetd runs fleetd as a process on a config from remediationConfigTmpl
// and returns its base URL, its output and a SIGKILL for it, once ready.
func startFleetd(t *testing.T, simURL, dir, cooldown string) (string, *lockedBuffer, func()) {
	t.Helper()
	base, out, cmd := fleetdProcess(t, "run", "--config", remediationConfig(t, dir, simURL, cooldown, ""), "--log.level", "debug")
	waitReadyOr(t, base, out)
	return base, out, func() {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
}

// metricValue returns the value of the first sample of /metrics matching re
// (a regexp over the series name and labels), or -1.
func metricValue(t *testing.T, base, series string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + series + ` (\S+)$`)
	m := re.FindStringSubmatch(fetch(t, base+"/metrics"))
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Recoverable faults are cured by one sync-device each and verified fixed; a
// device sync-device cannot cure gets exactly max_attempts commands, the last
// with power_cycle, and ends exhausted; dead devices and faults remediation
// may not touch get nothing. The simulator's own counts confirm it.
func TestRemediationAgainstTheSimulator(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	// Seconds of waiting on timers and processes, little CPU: it runs
	// alongside the other long tests.
	t.Parallel()
	var s *sim.Sim
	curable := map[string]sim.FaultKind{}
	untouchable := map[string]sim.FaultKind{}
	var stubborn string
	simURL := startSim(t, func(o *sim.Options) {
		o.Locations, o.DevicesPerLocation, o.Seed = 4, 10, 7
		o.SyncCureProbability = 1
		o.CommandStepDelay = 100 * time.Millisecond
	}, func(sm *sim.Sim) {
		s = sm
		used := map[string]bool{}
		next := 0 // spread the faults over the locations: one location full of them is a storm
		pick := func(f sim.FaultKind, syncable bool) string {
			locs := sm.Locations()
			for i := range locs {
				l := locs[(next+i)%len(locs)]
				for _, d := range sm.Devices(l.ID) {
					if used[d.ID] || syncable && !d.CanSync() {
						continue
					}
					if sm.SetFault(d.ID, f) == nil {
						used[d.ID] = true
						next++
						return d.ID
					}
				}
			}
			t.Fatalf("no device accepts %s", f)
			return ""
		}
		for _, f := range []sim.FaultKind{sim.FaultUnhealthy, sim.FaultHardwareError, sim.FaultNotResponding, sim.FaultLockMismatch} {
			curable[pick(f, true)] = f
		}
		for _, f := range []sim.FaultKind{sim.FaultDead, sim.FaultLongDead, sim.FaultUnknownState} {
			untouchable[pick(f, false)] = f
		}
		stubborn = pick(sim.FaultUnhealthy, true)
		if err := sm.SetStubborn(stubborn, true); err != nil {
			t.Fatal(err)
		}
	})
	base, out, _ := startFleetd(t, simURL, t.TempDir(), "2s")

	exhausted := `fleetd_remediation_exhausted\{[^}]*device_id="` + stubborn + `"[^}]*\}`
	waitUntil(t, "the stubborn device is exhausted", func() bool { return metricValue(t, base, exhausted) == 1 })
	st := s.Stats()
	for id, f := range curable {
		if n := st.Commands[id]["sync-device"]; n != 1 {
			t.Errorf("curable %s device %s got %d sync-device, want 1", f, id, n)
		}
		if d, _ := s.Device(id); len(d.Faults) != 0 {
			t.Errorf("curable %s device %s still has %v", f, id, d.Faults)
		}
	}
	if n := st.Commands[stubborn]["sync-device"]; n != 3 {
		t.Errorf("stubborn device got %d sync-device, want max_attempts = 3", n)
	}
	if n := st.PowerCycles[stubborn]; n != 1 {
		t.Errorf("stubborn device got %d power cycles, want 1 (the third attempt)", n)
	}
	for id, f := range untouchable {
		if n := st.CommandsTotal; st.Commands[id] != nil {
			t.Errorf("device with %s got commands %v (of %d)", f, st.Commands[id], n)
		}
	}
	if want := int64(len(curable) + 3); st.CommandsTotal != want {
		t.Errorf("simulator saw %d commands in all, want %d: %v", st.CommandsTotal, want, st.Commands)
	}
	fixed := 0.0
	for _, f := range []string{"unhealthy", "hardware_error", "not_responding", "lock_mismatch"} {
		fixed += metricValue(t, base, `fleetd_remediation_verified_total\{fault="`+f+`",result="fixed"\}`)
	}
	if fixed != float64(len(curable)) {
		t.Errorf("verified fixed = %v, want %d", fixed, len(curable))
	}
	if v := metricValue(t, base, `fleetd_remediation_verified_total\{fault="unhealthy",result="not_fixed"\}`); v != 3 {
		t.Errorf("verified not_fixed for the stubborn device = %v, want 3", v)
	}
	// Each command and decision is one audit line naming the device.
	logs := out.String()
	if got := strings.Count(logs, `"command_id"`); got == 0 || !strings.Contains(logs, `"device_id":"`+stubborn+`"`) {
		t.Errorf("no audit lines for commands in the log")
	}
	for _, secretValue := range []string{"fleetd-demo-secret", "access_token"} {
		if strings.Contains(logs, secretValue) {
			t.Errorf("log carries %q", secretValue)
		}
	}
}

// fleetd killed (SIGKILL) while its command is in flight and restarted on the
// same ledger sends nothing twice: it resumes polling the old command and
// verifies it, although the device's cooldown has long passed.
func TestCrashWithCommandsInFlightSendsNoDuplicate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	// Seconds of waiting on timers and processes, little CPU: it runs
	// alongside the other long tests.
	t.Parallel()
	var s *sim.Sim
	var ids []string
	simURL := startSim(t, func(o *sim.Options) {
		o.Locations, o.DevicesPerLocation, o.Seed = 4, 10, 7
		o.SyncCureProbability = 1
		o.CommandStepDelay = 3 * time.Second // NOT_SENT → SENT → RECEIVED → SUCCESS takes 9s
		o.CommandTimeout = time.Minute
	}, func(sm *sim.Sim) {
		s = sm
		for _, l := range sm.Locations() {
			for _, d := range sm.Devices(l.ID) {
				if d.CanSync() && len(ids) < 3 && sm.SetFault(d.ID, sim.FaultUnhealthy) == nil {
					ids = append(ids, d.ID)
					break
				}
			}
		}
		if len(ids) < 3 {
			t.Fatal("not enough syncable devices")
		}
	})
	dir := t.TempDir()
	_, out, kill := startFleetd(t, simURL, dir, "1s")
	waitUntil(t, "every command sent", func() bool { return s.Stats().CommandsTotal == int64(len(ids)) })
	// The simulator counts a POST before fleetd has its answer: killing
	// fleetd then leaves a command whose id the ledger never learnt, which
	// is rightly treated as an unknown outcome (blocked until its cooldown,
	// then sent again). This test is about commands with known ids, so it
	// waits until the ledger has recorded all three.
	waitUntil(t, "every command id recorded", func() bool {
		return strings.Count(out.String(), `"msg":"remediation command sent"`) == len(ids)
	})
	kill() // SIGKILL: no shutdown, the ledger holds three commands in flight
	if strings.Contains(out.String(), "shutting down") {
		t.Fatal("fleetd shut down gracefully; the test wanted a crash")
	}

	base, out2, _ := startFleetd(t, simURL, dir, "1s")
	waitUntil(t, "the old commands polled to success and verified", func() bool {
		return metricValue(t, base, `fleetd_remediation_verified_total\{fault="unhealthy",result="fixed"\}`) == float64(len(ids))
	})
	if v := metricValue(t, base, `fleetd_remediation_commands_total\{fault="unhealthy",result="success"\}`); v != float64(len(ids)) {
		t.Errorf("restarted fleetd counted %v successful commands, want %d (the resumed ones)", v, len(ids))
	}
	st := s.Stats()
	for _, id := range ids {
		if n := st.Commands[id]["sync-device"]; n != 1 {
			t.Errorf("device %s got %d sync-device across the crash, want 1", id, n)
		}
	}
	if st.CommandsTotal != int64(len(ids)) {
		t.Errorf("simulator saw %d commands, want %d", st.CommandsTotal, len(ids))
	}
	assertContains(t, out2.String(), `"msg":"resumed polling in-flight remediation commands","component":"remediation","commands":3`)
}
