package sim

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
)

func TestFaultEffects(t *testing.T) {
	tests := []struct {
		fault FaultKind
		pick  func(DeviceInfo) bool // selects the device type/variant
		check func(t *testing.T, h *harness, d *bikeep.Device)
	}{
		{FaultUnhealthy, syncable, func(t *testing.T, _ *harness, d *bikeep.Device) {
			if d.Health() != bikeep.HealthUnhealthy || d.HeartbeatHealth != bikeep.HealthUnhealthy || !d.HeartbeatV2.DeadSince.IsZero() {
				t.Errorf("health %s / %s", d.Health(), d.HeartbeatHealth)
			}
		}},
		{FaultDead, syncable, func(t *testing.T, _ *harness, d *bikeep.Device) {
			if d.Health() != bikeep.HealthDead || !d.HeartbeatV2.DeadSince.Equal(t0) || d.HeartbeatHealth != bikeep.HealthDead {
				t.Errorf("health %s dead_since %v", d.Health(), d.HeartbeatV2.DeadSince)
			}
		}},
		{FaultLongDead, syncable, func(t *testing.T, _ *harness, d *bikeep.Device) {
			age := t0.Sub(d.HeartbeatV2.DeadSince.Time)
			if d.Health() != bikeep.HealthLongDead || age < 3*24*time.Hour || age > 8*24*time.Hour {
				t.Errorf("health %s dead for %v", d.Health(), age)
			}
			if d.HeartbeatHealth != bikeep.HealthDead {
				t.Errorf("deprecated heartbeat_health %q, want DEAD for LONG_DEAD", d.HeartbeatHealth)
			}
		}},
		{FaultHardwareError, syncable, func(t *testing.T, _ *harness, d *bikeep.Device) {
			if d.HardwareState != bikeep.HardwareError {
				t.Errorf("hardware_state %s", d.HardwareState)
			}
		}},
		{FaultNotResponding, syncable, func(t *testing.T, _ *harness, d *bikeep.Device) {
			if d.HardwareState != bikeep.HardwareNotResponding {
				t.Errorf("hardware_state %s", d.HardwareState)
			}
		}},
		{FaultStuckTransition, syncable, func(t *testing.T, _ *harness, d *bikeep.Device) {
			if d.StateValue() != bikeep.StateLocking || !d.State.ChangedAt.Equal(t0.Add(-10*time.Minute)) ||
				d.State.TimeoutAt.IsZero() || !d.State.TimeoutAt.Before(t0) {
				t.Errorf("state %+v", d.State)
			}
		}},
		{FaultLockMismatch, syncable, func(t *testing.T, _ *harness, d *bikeep.Device) {
			if consistent(*d) == nil {
				t.Errorf("state %s lock %s agree", d.StateValue(), d.LockState)
			}
		}},
		{FaultLockMismatch, ofType(bikeep.TypeBikeHouseDoor), func(t *testing.T, _ *harness, d *bikeep.Device) {
			// Inverted: the mismatch of a door is state == lock.
			if string(d.StateValue()) != string(d.LockState) {
				t.Errorf("door state %s lock %s", d.StateValue(), d.LockState)
			}
		}},
		{FaultRentalLockMismatch, ofType(bikeep.TypeBikeRent), func(t *testing.T, h *harness, d *bikeep.Device) {
			r := rentalOf(t, h, d.Alias)
			if consistent(*d) != nil {
				t.Errorf("device itself inconsistent: %v", consistent(*d))
			}
			if strings.EqualFold(string(d.LockState), r["lock_state"].(string)) {
				t.Errorf("device lock %s agrees with rental lock %v", d.LockState, r["lock_state"])
			}
		}},
		{FaultOverdueRental, ofType(bikeep.TypeBikeRent), func(t *testing.T, h *harness, d *bikeep.Device) {
			r := rentalOf(t, h, d.Alias)
			start, err := time.Parse(copriLongTime, r["start_time"].(string))
			if err != nil {
				t.Fatal(err)
			}
			if age := t0.Sub(start); age != 30*time.Hour {
				t.Errorf("rental age %v, want 30h", age)
			}
		}},
		{FaultUnknownState, func(d DeviceInfo) bool { return syncable(d) && h0idx(d)%2 == 0 }, func(t *testing.T, _ *harness, d *bikeep.Device) {
			if d.HardwareState != "QUANTUM_FLUX" || d.HardwareState.Known() {
				t.Errorf("hardware_state %s", d.HardwareState)
			}
		}},
		{FaultUnknownState, func(d DeviceInfo) bool { return syncable(d) && h0idx(d)%2 == 1 }, func(t *testing.T, _ *harness, d *bikeep.Device) {
			if d.Health() != "ZOMBIE" || d.Health().Known() {
				t.Errorf("health %s", d.Health())
			}
		}},
		{FaultDisabled, syncable, func(t *testing.T, _ *harness, d *bikeep.Device) {
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
			if got, _ := h.sim.Device(di.ID); !slices.Equal(got.Faults, []FaultKind{tc.fault}) {
				t.Errorf("DeviceInfo.Faults %v", got.Faults)
			}
			if n := h.sim.Stats().Faults[tc.fault]; n != 1 {
				t.Errorf("stats count %d for %s", n, tc.fault)
			}
			if err := h.sim.SetFault(di.ID, FaultNone); err != nil {
				t.Fatal(err)
			}
			after := h.device(di.ID)
			if after.Health() != beforeHealth || after.HardwareState != before.HardwareState ||
				after.StateValue() != before.StateValue() || after.LockState != before.LockState {
				t.Errorf("FaultNone did not restore the device: %+v vs %+v", after, before)
			}
			if st := h.sim.Stats(); st.FaultyDevices != 0 {
				t.Errorf("%d faulty devices after clearing", st.FaultyDevices)
			}
		})
	}
}

// h0idx is a device's index within its location, from its alias.
func h0idx(d DeviceInfo) int {
	var n int
	for _, c := range d.Alias[strings.LastIndexByte(d.Alias, '-')+1:] {
		n = n*10 + int(c-'0')
	}
	return n - 1
}

// rentalOf returns the open rental of a bike from user_bikes_occupied.
func rentalOf(t *testing.T, h *harness, bike string) map[string]any {
	t.Helper()
	cookie := h.copriLogin()
	m := h.copri(url.Values{"request": {"user_bikes_occupied"}, "authcookie": {cookie}})
	for _, v := range m["bikes_occupied"].(map[string]any) {
		r := v.(map[string]any)
		if r["bike"] == bike {
			return r
		}
	}
	t.Fatalf("no rental for bike %s", bike)
	return nil
}

func TestSetFaultRefusals(t *testing.T) {
	h := newHarness(t, testOptions())
	guard := h.findDevice(ofType(bikeep.TypeGuard))
	locker := h.findDevice(ofType(bikeep.TypeLocker))
	tests := []struct {
		name string
		id   string
		f    FaultKind
	}{
		{"unknown device", "nope", FaultDead},
		{"unknown kind", locker.ID, "melted"},
		{"guard has no lock", guard.ID, FaultLockMismatch},
		{"locker has no rental", locker.ID, FaultOverdueRental},
		{"locker has no rental lock", locker.ID, FaultRentalLockMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := h.sim.SetFault(tc.id, tc.f); err == nil {
				t.Error("accepted")
			}
		})
	}
	// The HTTP hook.
	resp, body := h.do(http.MethodPost, "/sim/v1/devices/"+locker.ID+"/faults", "", `{"fault":"dead"}`, "application/json")
	if resp.StatusCode != 200 || h.device(locker.ID).Health() != bikeep.HealthDead {
		t.Errorf("hook: %d %s", resp.StatusCode, body)
	}
	resp, _ = h.do(http.MethodPost, "/sim/v1/devices/"+locker.ID+"/faults", "", `{"fault":"none"}`, "application/json")
	if resp.StatusCode != 200 || h.device(locker.ID).Health() != bikeep.HealthHealthy {
		t.Errorf("hook none: %d", resp.StatusCode)
	}
	resp, _ = h.do(http.MethodPost, "/sim/v1/devices/"+locker.ID+"/faults", "", `{"fault":"melted"}`, "application/json")
	if resp.StatusCode != 400 {
		t.Errorf("hook with unknown kind: %d", resp.StatusCode)
	}
	resp, body = h.do(http.MethodPost, "/sim/v1/devices/"+locker.ID+"/stubborn", "", `{"stubborn":true}`, "application/json")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"stubborn":true`) {
		t.Errorf("stubborn hook: %d %s", resp.StatusCode, body)
	}
	resp, _ = h.do(http.MethodPost, "/sim/v1/devices/nope/stubborn", "", `{"stubborn":true}`, "application/json")
	if resp.StatusCode != 404 {
		t.Errorf("stubborn hook, unknown device: %d", resp.StatusCode)
	}
}

// stepTo advances the fake clock by d and runs Step.
func (h *harness) stepTo(d time.Duration) {
	h.sim.Step(h.clock.Add(d))
}

func TestSyncDeviceLifecycleCures(t *testing.T) {
	for _, fault := range []FaultKind{FaultUnhealthy, FaultHardwareError, FaultNotResponding, FaultStuckTransition, FaultLockMismatch} {
		t.Run(string(fault), func(t *testing.T) {
			o := testOptions()
			o.SyncCureProbability = 1
			h := newHarness(t, o)
			h.sim.Step(h.clock.Now())
			di := h.findDevice(syncable)
			if err := h.sim.SetFault(di.ID, fault); err != nil {
				t.Fatal(err)
			}
			status, body := h.command(di.ID, map[string]any{"command": "sync-device"})
			if status != 200 {
				t.Fatalf("status %d: %s", status, body)
			}
			var c bikeep.Command
			mustUnmarshal(t, body, &c)
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
		fault      FaultKind
		powerCycle bool
		stubborn   bool
		wantCured  bool
	}{
		{"never", -1, FaultUnhealthy, false, false, false},
		{"never, but power cycle fixes hardware", -1, FaultHardwareError, true, false, true},
		{"never, power cycle does not fix unhealthy", -1, FaultUnhealthy, true, false, false},
		{"always", 1, FaultLockMismatch, false, false, true},
		{"always, but stubborn", 1, FaultLockMismatch, false, true, false},
		{"stubborn resists power cycle", 1, FaultHardwareError, true, true, false},
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
			status, body := h.command(di.ID, map[string]any{"command": "sync-device", "power_cycle": tc.powerCycle})
			if status != 200 {
				t.Fatalf("%d %s", status, body)
			}
			h.stepTo(5 * time.Second)
			var c bikeep.Command
			mustUnmarshal(t, body, &c)
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

func TestSyncCureIsDeterministic(t *testing.T) {
	run := func() []bool {
		o := testOptions()
		o.SyncCureProbability = 0.5
		h := newHarness(t, o)
		var out []bool
		for _, l := range h.sim.Locations() {
			for _, di := range h.sim.Devices(l.ID) {
				if !syncable(di) {
					continue
				}
				_ = h.sim.SetFault(di.ID, FaultUnhealthy)
				h.command(di.ID, map[string]any{"command": "sync-device"})
			}
		}
		h.stepTo(5 * time.Second)
		for _, l := range h.sim.Locations() {
			for _, di := range h.sim.Devices(l.ID) {
				out = append(out, len(di.Faults) == 0)
			}
		}
		return out
	}
	a, b := run(), run()
	if !slices.Equal(a, b) {
		t.Error("same seed, different cures")
	}
	var cured, total int
	for _, c := range a {
		total++
		if c {
			cured++
		}
	}
	if cured == total {
		t.Error("probability 0.5 cured everything")
	}
}

func TestDeadDevicesNeverAnswer(t *testing.T) {
	for _, fault := range []FaultKind{FaultDead, FaultLongDead} {
		t.Run(string(fault), func(t *testing.T) {
			o := testOptions()
			o.SyncCureProbability = 1
			h := newHarness(t, o)
			di := h.findDevice(syncable)
			_ = h.sim.SetFault(di.ID, fault)
			_ = h.sim.SetFault(di.ID, FaultUnhealthy)
			_, body := h.command(di.ID, map[string]any{"command": "sync-device", "power_cycle": true})
			var c bikeep.Command
			mustUnmarshal(t, body, &c)
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

func TestCommandValidation(t *testing.T) {
	h := newHarness(t, testOptions())
	door := h.findDevice(ofType(bikeep.TypeBikeHouseDoor))
	dock := h.findDevice(func(d DeviceInfo) bool { return syncable(d) && d.PowerSaveStrategy == bikeep.PowerNone })
	tests := []struct {
		name     string
		device   string
		req      map[string]any
		wantCode string
		want     int
	}{
		{"door cannot sync", door.ID, map[string]any{"command": "sync-device"}, "ERRORS.COMMAND_NOT_SUPPORTED", 400},
		{"unknown command", dock.ID, map[string]any{"command": "self-destruct"}, "ERRORS.COMMAND_NOT_SUPPORTED", 400},
		{"force-unlock needs reason", dock.ID, map[string]any{"command": "force-unlock"}, "ERRORS.VALIDATION_ERROR", 400},
		{"book in the past", dock.ID, map[string]any{"command": "book", "timeout_at": "2001-01-01T00:00:00Z"}, "ERRORS.INVALID_TIMEOUT_AT", 400},
		{"unknown device", "nope", map[string]any{"command": "lock"}, "ERRORS.NOT_FOUND", 404},
		{"door unlock ok", door.ID, map[string]any{"command": "unlock"}, "", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := h.command(tc.device, tc.req)
			if status != tc.want {
				t.Fatalf("status %d, want %d: %s", status, tc.want, body)
			}
			if tc.wantCode != "" {
				var e wireError
				mustUnmarshal(t, body, &e)
				if e.ErrorCode != tc.wantCode || !uuidRE.MatchString(e.CorrelationID) {
					t.Errorf("error %+v", e)
				}
			}
		})
	}

	t.Run("lock throttle", func(t *testing.T) {
		status, body := h.command(dock.ID, map[string]any{"command": "unlock"})
		if status != 200 {
			t.Fatalf("%d %s", status, body)
		}
		req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/device/v1/devices/"+dock.ID+"/commands", strings.NewReader(`{"command":"lock"}`))
		req.Header.Set("Authorization", "Bearer "+h.token)
		resp, err := h.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "" {
			t.Errorf("second lock: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		// sync-device is not throttled.
		if status, _ := h.command(dock.ID, map[string]any{"command": "sync-device"}); status != 200 {
			t.Errorf("sync during throttle: %d", status)
		}
		h.clock.Add(3 * time.Second)
		if status, body := h.command(dock.ID, map[string]any{"command": "lock"}); status != 200 {
			t.Errorf("lock after the window: %d %s", status, body)
		}
	})
}

func TestLockUnlockChangeState(t *testing.T) {
	h := newHarness(t, testOptions())
	di := h.findDevice(func(d DeviceInfo) bool { return syncable(d) && d.Type == bikeep.TypeLocker })
	start := h.device(di.ID)
	cmd, want := "lock", bikeep.StateLocked
	if start.StateValue() == bikeep.StateLocked {
		cmd, want = "unlock", bikeep.StateUnlocked
	}
	if status, body := h.command(di.ID, map[string]any{"command": cmd}); status != 200 {
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

func TestFaultEvolution(t *testing.T) {
	run := func() ([]FaultKind, Stats) {
		o := testOptions()
		o.Locations = 40
		o.FaultRate = 0.01
		h := newHarness(t, o)
		h.sim.Step(h.clock.Now())
		for range 10 {
			h.stepTo(time.Minute)
		}
		var all []FaultKind
		for _, l := range h.sim.Locations() {
			for _, d := range h.sim.Devices(l.ID) {
				all = append(all, d.Faults...)
			}
		}
		return all, h.sim.Stats()
	}
	a, st := run()
	b, _ := run()
	if !slices.Equal(a, b) {
		t.Error("same seed and steps, different faults")
	}
	// 400 devices × 10 minutes × 1 % ≈ 40 fault starts.
	if st.FaultyDevices < 15 || st.FaultyDevices > 80 {
		t.Errorf("%d faulty devices, want about 40", st.FaultyDevices)
	}

	o := testOptions()
	o.FaultRate, o.CureRate = 0, 0.5
	h := newHarness(t, o)
	h.sim.Step(h.clock.Now())
	for _, l := range h.sim.Locations()[:5] {
		_ = h.sim.SetFault(h.sim.Devices(l.ID)[3].ID, FaultUnhealthy)
	}
	for range 20 {
		h.stepTo(time.Minute)
	}
	if n := h.sim.Stats().FaultyDevices; n > 1 {
		t.Errorf("%d faulty devices after 20 minutes at cure rate 0.5", n)
	}
}

func TestStatsCounts(t *testing.T) {
	h := newHarness(t, testOptions())
	loc := h.sim.Locations()[0]
	h.get("/location/v1/locations")
	for range 3 {
		h.get("/device/v1/locations/" + loc.ID + "/devices")
	}
	d := h.findDevice(syncable)
	h.get("/device/v1/devices/" + d.ID)
	h.command(d.ID, map[string]any{"command": "sync-device"})
	h.command(d.ID, map[string]any{"command": "sync-device"})
	_ = h.sim.SetFault(d.ID, FaultDead)
	h.copriLogin()

	var st Stats
	resp, body := h.do(http.MethodGet, "/sim/v1/stats", "", "", "")
	if resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	mustUnmarshal(t, body, &st)
	want := map[string]int64{
		routeToken: 1, routeLocations: 1, routeLocDevices: 3, routeDevice: 1, routeSendCommand: 2,
		routeCommand: 0, routeCopriPrefix + "authorization": 1,
	}
	for k, n := range want {
		if st.Requests[k] != n {
			t.Errorf("requests[%q] = %d, want %d", k, st.Requests[k], n)
		}
	}
	if st.RequestsTotal != 9 || st.Commands[d.ID]["sync-device"] != 2 || st.Faults[FaultDead] != 1 || st.Faults[FaultUnhealthy] != 0 {
		t.Errorf("stats %+v", st)
	}
}
