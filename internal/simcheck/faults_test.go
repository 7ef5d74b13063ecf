package simcheck

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/sim"
	"github.com/fleetd/fleetd/internal/simtest"
)

// These tests decode what the simulator serves with the real client's
// types; they moved here from internal/sim, which imports no client.

func TestFaultEffects(t *testing.T) {
	tests := []struct {
		fault sim.FaultKind
		pick  func(sim.DeviceInfo) bool // selects the device type/variant
		check func(t *testing.T, h *harness, d *bikeep.Device)
	}{
		{sim.FaultUnhealthy, syncable, func(t *testing.T, _ *harness, d *bikeep.Device) {
			if d.Health() != bikeep.HealthUnhealthy || d.HeartbeatHealth != bikeep.HealthUnhealthy || !d.HeartbeatV2.DeadSince.IsZero() {
				t.Errorf("health %s / %s", d.Health(), d.HeartbeatHealth)
			}
		}},
		{sim.FaultDead, syncable, func(t *testing.T, _ *harness, d *bikeep.Device) {
			if d.Health() != bikeep.HealthDead || !d.HeartbeatV2.DeadSince.Equal(t0) || d.HeartbeatHealth != bikeep.HealthDead {
				t.Errorf("health %s dead_since %v", d.Health(), d.HeartbeatV2.DeadSince)
			}
		}},
		{sim.FaultLongDead, syncable, func(t *testing.T, _ *harness, d *bikeep.Device) {
			age := t0.Sub(d.HeartbeatV2.DeadSince.Time)
			if d.Health() != bikeep.HealthLongDead || age < 3*24*time.Hour || age > 8*24*time.Hour {
				t.Errorf("health %s dead for %v", d.Health(), age)
			}
			if d.HeartbeatHealth != bikeep.HealthDead {
				t.Errorf("deprecated heartbeat_health %q, want DEAD for LONG_DEAD", d.HeartbeatHealth)
			}
		}},
		{sim.FaultHardwareError, syncable, func(t *testing.T, _ *harness, d *bikeep.Device) {
			if d.HardwareState != bikeep.HardwareError {
				t.Errorf("hardware_state %s", d.HardwareState)
			}
		}},
		{sim.FaultNotResponding, syncable, func(t *testing.T, _ *harness, d *bikeep.Device) {
			if d.HardwareState != bikeep.HardwareNotResponding {
				t.Errorf("hardware_state %s", d.HardwareState)
			}
		}},
		{sim.FaultStuckTransition, syncable, func(t *testing.T, _ *harness, d *bikeep.Device) {
			if d.StateValue() != bikeep.StateLocking || !d.State.ChangedAt.Equal(t0.Add(-10*time.Minute)) ||
				d.State.TimeoutAt.IsZero() || !d.State.TimeoutAt.Before(t0) {
				t.Errorf("state %+v", d.State)
			}
		}},
		{sim.FaultLockMismatch, syncable, func(t *testing.T, _ *harness, d *bikeep.Device) {
			if consistent(*d) == nil {
				t.Errorf("state %s lock %s agree", d.StateValue(), d.LockState)
			}
		}},
		{sim.FaultLockMismatch, ofType(bikeep.TypeBikeHouseDoor), func(t *testing.T, _ *harness, d *bikeep.Device) {
			// A door's lock agrees with its state like any other lock's:
			// its mismatch is an idle LOCKED door whose lock reads UNLOCKED.
			if d.StateValue() != bikeep.StateLocked || d.LockState != bikeep.LockUnlocked || consistent(*d) == nil {
				t.Errorf("door state %s lock %s", d.StateValue(), d.LockState)
			}
		}},
		{sim.FaultRentalLockMismatch, ofType(bikeep.TypeBikeRent), func(t *testing.T, h *harness, d *bikeep.Device) {
			r := rentalOf(t, h, d.Alias)
			if consistent(*d) != nil {
				t.Errorf("device itself inconsistent: %v", consistent(*d))
			}
			if strings.EqualFold(string(d.LockState), r["lock_state"].(string)) {
				t.Errorf("device lock %s agrees with rental lock %v", d.LockState, r["lock_state"])
			}
		}},
		{sim.FaultOverdueRental, ofType(bikeep.TypeBikeRent), func(t *testing.T, h *harness, d *bikeep.Device) {
			r := rentalOf(t, h, d.Alias)
			start, err := time.Parse(copriLongTime, r["start_time"].(string))
			if err != nil {
				t.Fatal(err)
			}
			if age := t0.Sub(start); age != 30*time.Hour {
				t.Errorf("rental age %v, want 30h", age)
			}
		}},
		{sim.FaultUnknownState, func(d sim.DeviceInfo) bool { return syncable(d) && h0idx(d)%2 == 0 }, func(t *testing.T, _ *harness, d *bikeep.Device) {
			if d.HardwareState != "QUANTUM_FLUX" || d.HardwareState.Known() {
				t.Errorf("hardware_state %s", d.HardwareState)
			}
		}},
		{sim.FaultUnknownState, func(d sim.DeviceInfo) bool { return syncable(d) && h0idx(d)%2 == 1 }, func(t *testing.T, _ *harness, d *bikeep.Device) {
			if d.Health() != "ZOMBIE" || d.Health().Known() {
				t.Errorf("health %s", d.Health())
			}
		}},
		{sim.FaultDisabled, syncable, func(t *testing.T, _ *harness, d *bikeep.Device) {
			if d.HardwareState != bikeep.HardwareDisabled {
				t.Errorf("hardware_state %s", d.HardwareState)
			}
		}},
	}
	for i, tc := range tests {
		h := newHarness(t, testOptions())
		di := h.findDevice(tc.pick)
		t.Run(fmt.Sprintf("%02d_%s_%s", i, tc.fault, di.Type), func(t *testing.T) {
			before := h.device(di.ID)
			beforeHealth := before.Health()
			if err := h.sim.SetFault(di.ID, tc.fault); err != nil {
				t.Fatal(err)
			}
			tc.check(t, h, h.device(di.ID))
			if got, _ := h.sim.Device(di.ID); !slices.Equal(got.Faults, []sim.FaultKind{tc.fault}) {
				t.Errorf("sim.DeviceInfo.Faults %v", got.Faults)
			}
			if n := h.sim.Stats().Faults[tc.fault]; n != 1 {
				t.Errorf("stats count %d for %s", n, tc.fault)
			}
			if err := h.sim.SetFault(di.ID, sim.FaultNone); err != nil {
				t.Fatal(err)
			}
			after := h.device(di.ID)
			if after.Health() != beforeHealth || after.HardwareState != before.HardwareState ||
				after.StateValue() != before.StateValue() || after.LockState != before.LockState {
				t.Errorf("sim.FaultNone did not restore the device: %+v vs %+v", after, before)
			}
			if st := h.sim.Stats(); st.FaultyDevices != 0 {
				t.Errorf("%d faulty devices after clearing", st.FaultyDevices)
			}
		})
	}
}

func TestSyncDeviceLifecycleCures(t *testing.T) {
	for _, fault := range []sim.FaultKind{sim.FaultUnhealthy, sim.FaultHardwareError, sim.FaultNotResponding, sim.FaultStuckTransition, sim.FaultLockMismatch} {
		t.Run(string(fault), func(t *testing.T) {
			o := testOptions()
			o.SyncCureProbability = 1
			h := newHarness(t, o)
			h.sim.Step(h.clock.Now())
			di := h.findDevice(syncable)
			if err := h.sim.SetFault(di.ID, fault); err != nil {
				t.Fatal(err)
			}
			status, body := h.Command(di.ID, map[string]any{"command": "sync-device"})
			if status != 200 {
				t.Fatalf("status %d: %s", status, body)
			}
			var c bikeep.Command
			simtest.MustUnmarshal(t, body, &c)
			if c.State.Value != bikeep.CommandNotSent || c.Name != "sync-device" || c.Device.ID != di.ID ||
				!c.State.TimeoutAt.Equal(t0.Add(60*time.Second)) || !uuidRE.MatchString(c.ID) {
				t.Fatalf("new command %+v", c)
			}
			for _, want := range []bikeep.CommandStateValue{bikeep.CommandSent, bikeep.CommandReceived, bikeep.CommandSuccess} {
				h.stepTo(time.Second)
				if got := h.getCommand(c.ID).State.Value; got != want {
					t.Fatalf("state %s, want %s", got, want)
				}
			}
			c = h.getCommand(c.ID)
			prefixes := map[string]bool{}
			for _, e := range c.Events {
				p, _, _ := strings.Cut(e.Name, "_")
				prefixes[p] = true
				if e.Timestamp.IsZero() {
					t.Errorf("event %s without timestamp", e.Name)
				}
			}
			for _, p := range []string{"REQUEST", "RESPONSE", "STATE"} {
				if !prefixes[p] {
					t.Errorf("no %s_ event in %+v", p, c.Events)
				}
			}
			if !c.State.TimeoutAt.IsZero() {
				t.Errorf("final state has timeout_at %v", c.State.TimeoutAt)
			}
			d := h.device(di.ID)
			if d.Health() != bikeep.HealthHealthy || d.HardwareState != bikeep.HardwareNormal || consistent(*d) != nil ||
				d.StateValue() == bikeep.StateLocking {
				t.Errorf("not cured: health %s hw %s state %s lock %s", d.Health(), d.HardwareState, d.StateValue(), d.LockState)
			}
			st := h.sim.Stats()
			if st.Commands[di.ID]["sync-device"] != 1 || st.CommandsTotal != 1 || st.FaultyDevices != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestSyncDeviceCureProbability(t *testing.T) {
	tests := []struct {
		name       string
		prob       float64
		fault      sim.FaultKind
		powerCycle bool
		stubborn   bool
		wantCured  bool
	}{
		{"never", -1, sim.FaultUnhealthy, false, false, false},
		{"never, but power cycle fixes hardware", -1, sim.FaultHardwareError, true, false, true},
		{"never, power cycle does not fix unhealthy", -1, sim.FaultUnhealthy, true, false, false},
		{"always", 1, sim.FaultLockMismatch, false, false, true},
		{"always, but stubborn", 1, sim.FaultLockMismatch, false, true, false},
		{"stubborn resists power cycle", 1, sim.FaultHardwareError, true, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions()
			o.SyncCureProbability = tc.prob
			h := newHarness(t, o)
			di := h.findDevice(syncable)
			if err := h.sim.SetFault(di.ID, tc.fault); err != nil {
				t.Fatal(err)
			}
			if err := h.sim.SetStubborn(di.ID, tc.stubborn); err != nil {
				t.Fatal(err)
			}
			status, body := h.Command(di.ID, map[string]any{"command": "sync-device", "power_cycle": tc.powerCycle})
			if status != 200 {
				t.Fatalf("%d %s", status, body)
			}
			h.stepTo(5 * time.Second)
			var c bikeep.Command
			simtest.MustUnmarshal(t, body, &c)
			if got := h.getCommand(c.ID).State.Value; got != bikeep.CommandSuccess {
				t.Fatalf("command %s", got)
			}
			info, _ := h.sim.Device(di.ID)
			if cured := len(info.Faults) == 0; cured != tc.wantCured {
				t.Errorf("cured %v, want %v (faults %v)", cured, tc.wantCured, info.Faults)
			}
			wantPC := int64(0)
			if tc.powerCycle {
				wantPC = 1
			}
			if got := h.sim.Stats().PowerCycles[di.ID]; got != wantPC {
				t.Errorf("Stats().PowerCycles[%s] = %d, want %d", di.ID, got, wantPC)
			}
		})
	}
}

func TestDeadDevicesNeverAnswer(t *testing.T) {
	for _, fault := range []sim.FaultKind{sim.FaultDead, sim.FaultLongDead} {
		t.Run(string(fault), func(t *testing.T) {
			o := testOptions()
			o.SyncCureProbability = 1
			h := newHarness(t, o)
			di := h.findDevice(syncable)
			_ = h.sim.SetFault(di.ID, fault)
			_ = h.sim.SetFault(di.ID, sim.FaultUnhealthy)
			_, body := h.Command(di.ID, map[string]any{"command": "sync-device", "power_cycle": true})
			var c bikeep.Command
			simtest.MustUnmarshal(t, body, &c)
			h.stepTo(10 * time.Second)
			if got := h.getCommand(c.ID).State.Value; got != bikeep.CommandSent {
				t.Fatalf("state %s, want SENT", got)
			}
			h.stepTo(49 * time.Second)
			if got := h.getCommand(c.ID).State.Value; got != bikeep.CommandSent {
				t.Fatalf("state %s before timeout, want SENT", got)
			}
			h.stepTo(2 * time.Second)
			got := h.getCommand(c.ID)
			if got.State.Value != bikeep.CommandError || got.State.Reason != "timeout" {
				t.Fatalf("after timeout: %+v", got.State)
			}
			if info, _ := h.sim.Device(di.ID); len(info.Faults) != 2 {
				t.Errorf("faults %v changed", info.Faults)
			}
		})
	}
}

func TestLockUnlockChangeState(t *testing.T) {
	h := newHarness(t, testOptions())
	di := h.findDevice(func(d sim.DeviceInfo) bool { return syncable(d) && d.Type == string(bikeep.TypeLocker) })
	start := h.device(di.ID)
	cmd, want := "lock", bikeep.StateLocked
	if start.StateValue() == bikeep.StateLocked {
		cmd, want = "unlock", bikeep.StateUnlocked
	}
	if status, body := h.Command(di.ID, map[string]any{"command": cmd}); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	h.stepTo(2 * time.Second) // RECEIVED: in transition
	if got := h.device(di.ID).StateValue(); got != bikeep.StateLocking && got != bikeep.StateUnlocking {
		t.Errorf("received: state %s, want a transition", got)
	}
	h.stepTo(time.Second)
	d := h.device(di.ID)
	if d.StateValue() != want || consistent(*d) != nil {
		t.Errorf("after %s: state %s lock %s", cmd, d.StateValue(), d.LockState)
	}
}
