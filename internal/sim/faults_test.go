package sim

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/simtest"
)

func TestSetFaultRefusals(t *testing.T) {
	h := newHarness(t, testOptions())
	guard := h.findDevice(ofType(typeGuard))
	locker := h.findDevice(ofType(typeLocker))
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
	resp, body := h.Do(http.MethodPost, "/sim/v1/devices/"+locker.ID+"/faults", "", `{"fault":"dead"}`, "application/json")
	if resp.StatusCode != 200 || h.deviceHealth(locker.ID) != string(healthDead) {
		t.Errorf("hook: %d %s", resp.StatusCode, body)
	}
	resp, _ = h.Do(http.MethodPost, "/sim/v1/devices/"+locker.ID+"/faults", "", `{"fault":"none"}`, "application/json")
	if resp.StatusCode != 200 || h.deviceHealth(locker.ID) != string(healthHealthy) {
		t.Errorf("hook none: %d", resp.StatusCode)
	}
	resp, _ = h.Do(http.MethodPost, "/sim/v1/devices/"+locker.ID+"/faults", "", `{"fault":"melted"}`, "application/json")
	if resp.StatusCode != 400 {
		t.Errorf("hook with unknown kind: %d", resp.StatusCode)
	}
	resp, body = h.Do(http.MethodPost, "/sim/v1/devices/"+locker.ID+"/stubborn", "", `{"stubborn":true}`, "application/json")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"stubborn":true`) {
		t.Errorf("stubborn hook: %d %s", resp.StatusCode, body)
	}
	resp, _ = h.Do(http.MethodPost, "/sim/v1/devices/nope/stubborn", "", `{"stubborn":true}`, "application/json")
	if resp.StatusCode != 404 {
		t.Errorf("stubborn hook, unknown device: %d", resp.StatusCode)
	}
}

// stepTo advances the fake clock by d and runs Step.
func (h *harness) stepTo(d time.Duration) {
	h.sim.Step(h.clock.Add(d))
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
				h.Command(di.ID, map[string]any{"command": "sync-device"})
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

func TestCommandValidation(t *testing.T) {
	h := newHarness(t, testOptions())
	door := h.findDevice(ofType(typeBikeHouseDoor))
	dock := h.findDevice(func(d DeviceInfo) bool { return syncable(d) && d.PowerSaveStrategy == string(powerNone) })
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
			status, body := h.Command(tc.device, tc.req)
			if status != tc.want {
				t.Fatalf("status %d, want %d: %s", status, tc.want, body)
			}
			if tc.wantCode != "" {
				var e wireError
				simtest.MustUnmarshal(t, body, &e)
				if e.ErrorCode != tc.wantCode || !uuidRE.MatchString(e.CorrelationID) {
					t.Errorf("error %+v", e)
				}
			}
		})
	}

	t.Run("lock throttle", func(t *testing.T) {
		status, body := h.Command(dock.ID, map[string]any{"command": "unlock"})
		if status != 200 {
			t.Fatalf("%d %s", status, body)
		}
		req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/device/v1/devices/"+dock.ID+"/commands", strings.NewReader(`{"command":"lock"}`))
		req.Header.Set("Authorization", "Bearer "+h.Token)
		resp, err := h.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "" {
			t.Errorf("second lock: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		// sync-device is not throttled.
		if status, _ := h.Command(dock.ID, map[string]any{"command": "sync-device"}); status != 200 {
			t.Errorf("sync during throttle: %d", status)
		}
		h.clock.Add(3 * time.Second)
		if status, body := h.Command(dock.ID, map[string]any{"command": "lock"}); status != 200 {
			t.Errorf("lock after the window: %d %s", status, body)
		}
	})
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
	h.Get("/location/v1/locations")
	for range 3 {
		h.Get("/device/v1/locations/" + loc.ID + "/devices")
	}
	d := h.findDevice(syncable)
	h.Get("/device/v1/devices/" + d.ID)
	h.Command(d.ID, map[string]any{"command": "sync-device"})
	h.Command(d.ID, map[string]any{"command": "sync-device"})
	_ = h.sim.SetFault(d.ID, FaultDead)
	h.CopriLogin()

	var st Stats
	resp, body := h.Do(http.MethodGet, "/sim/v1/stats", "", "", "")
	if resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	simtest.MustUnmarshal(t, body, &st)
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
