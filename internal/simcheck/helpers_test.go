package simcheck

import (
	"fmt"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/sim"
	"github.com/fleetd/fleetd/internal/simtest"
)

// t0 is the fake clock's start: a summer date, so Berlin is at +02.
var t0 = time.Date(2025, 6, 15, 10, 0, 0, 0, time.UTC)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// copriLongTime is COPRI's long timestamp shape, 2021-10-28 18:09:17.454818+02.
const copriLongTime = "2006-01-02 15:04:05.000000-07"

// harness is a simulator behind an httptest server with a fake clock,
// driven only through the simulator's exported API and its HTTP routes.
type harness struct {
	*simtest.Client
	t     *testing.T
	sim   *sim.Sim
	srv   *httptest.Server
	clock *simtest.Clock
}

func testOptions() sim.Options {
	o := sim.DefaultOptions()
	o.Latency = 0
	o.Locations = 12
	o.DevicesPerLocation = 10
	o.CommandStepDelay = time.Second
	return o
}

// credentials are the simulator's default accounts.
func credentials() simtest.Credentials {
	return simtest.Credentials{
		ClientID: sim.DefaultClientID, ClientSecret: sim.DefaultClientSecret,
		CopriMerchant: sim.DefaultCopriMerchant, CopriUser: sim.DefaultCopriUser, CopriPassword: sim.DefaultCopriPassword,
	}
}

func newHarness(t *testing.T, o sim.Options) *harness {
	t.Helper()
	c := simtest.NewClock(t0)
	o.Now = c.Now
	s, err := sim.New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	h := &harness{Client: &simtest.Client{T: t, URL: srv.URL, HTTP: srv.Client(), Creds: credentials()}, t: t, sim: s, srv: srv, clock: c}
	h.Token = h.FetchToken()
	return h
}

// device fetches one device decoded with the client's types.
func (h *harness) device(id string) *bikeep.Device {
	h.t.Helper()
	var d bikeep.Device
	simtest.MustUnmarshal(h.t, h.Get("/device/v1/devices/"+id), &d)
	return &d
}

func (h *harness) getCommand(id string) bikeep.Command {
	h.t.Helper()
	var c bikeep.Command
	simtest.MustUnmarshal(h.t, h.Get("/device/v1/commands/"+id), &c)
	return c
}

// stepTo advances the fake clock by d and runs Step.
func (h *harness) stepTo(d time.Duration) {
	h.sim.Step(h.clock.Add(d))
}

// findDevice returns the first device satisfying ok.
func (h *harness) findDevice(ok func(sim.DeviceInfo) bool) sim.DeviceInfo {
	h.t.Helper()
	for _, l := range h.sim.Locations() {
		for _, d := range h.sim.Devices(l.ID) {
			if ok(d) {
				return d
			}
		}
	}
	h.t.Fatal("no device matches")
	return sim.DeviceInfo{}
}

// ofType selects devices of a type named by the client's constant.
func ofType(t bikeep.DeviceType) func(sim.DeviceInfo) bool {
	return func(d sim.DeviceInfo) bool { return d.Type == string(t) }
}

// syncable is a device fleetd may sync that has a lock.
func syncable(d sim.DeviceInfo) bool {
	return d.CanSync() && d.Type != string(bikeep.TypeGuard) && d.Type != string(bikeep.TypeBikeRent) && len(d.Faults) == 0
}

// consistent checks state.value against lock_state the way DESIGN.md
// defines lock agreement: the same for every type with a lock (an idle
// BIKE_HOUSE_DOOR is LOCKED/LOCKED), no lock for GUARD, BOOKED and
// ALLOCATED not compared.
func consistent(d bikeep.Device) error {
	sv, ls := (&d).StateValue(), d.LockState
	if d.Type == bikeep.TypeGuard {
		if ls != "" {
			return fmt.Errorf("GUARD lock_state %q, want none", ls)
		}
		return nil
	}
	if sv == bikeep.StateBooked || sv == bikeep.StateAllocated {
		return nil
	}
	if string(sv) != string(ls) {
		return fmt.Errorf("%s state %s lock %s disagree", d.Type, sv, ls)
	}
	return nil
}

// h0idx is a device's index within its location, from its alias.
func h0idx(d sim.DeviceInfo) int {
	var n int
	for _, c := range d.Alias[strings.LastIndexByte(d.Alias, '-')+1:] {
		n = n*10 + int(c-'0')
	}
	return n - 1
}

// rentalOf returns the open rental of a bike from user_bikes_occupied.
func rentalOf(t *testing.T, h *harness, bike string) map[string]any {
	t.Helper()
	cookie := h.CopriLogin()
	m := h.Copri(url.Values{"request": {"user_bikes_occupied"}, "authcookie": {cookie}})
	for _, v := range m["bikes_occupied"].(map[string]any) {
		r := v.(map[string]any)
		if r["bike"] == bike {
			return r
		}
	}
	t.Fatalf("no rental for bike %s", bike)
	return nil
}
