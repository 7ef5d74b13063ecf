package sim

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/simtest"
)

// t0 is the fake clock's start: a summer date, so Berlin is at +02.
var t0 = time.Date(2025, 6, 15, 10, 0, 0, 0, time.UTC)

// harness is a simulator behind an httptest server with a fake clock.
type harness struct {
	*simtest.Client
	t     *testing.T
	sim   *Sim
	srv   *httptest.Server
	clock *simtest.Clock
}

func testOptions() Options {
	o := DefaultOptions()
	o.Latency = 0
	o.Locations = 12
	o.DevicesPerLocation = 10
	o.CommandStepDelay = time.Second
	return o
}

// credentials are the simulator's default accounts.
func credentials() simtest.Credentials {
	return simtest.Credentials{
		ClientID: DefaultClientID, ClientSecret: DefaultClientSecret,
		CopriMerchant: DefaultCopriMerchant, CopriUser: DefaultCopriUser, CopriPassword: DefaultCopriPassword,
	}
}

func newHarness(t *testing.T, o Options) *harness {
	t.Helper()
	c := simtest.NewClock(t0)
	o.Now = c.Now
	s, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	h := &harness{Client: &simtest.Client{T: t, URL: srv.URL, HTTP: srv.Client(), Creds: credentials()}, t: t, sim: s, srv: srv, clock: c}
	if o.ErrorRate == 0 {
		h.Token = h.FetchToken()
	}
	return h
}

// deviceHealth fetches one device and returns its heartbeat_v2.health ("" when
// heartbeat_v2 is null). Tests that decode devices with the client's types
// live in internal/simcheck: this package never imports a client.
func (h *harness) deviceHealth(id string) string {
	h.t.Helper()
	var d struct {
		HeartbeatV2 *struct {
			Health string `json:"health"`
		} `json:"heartbeat_v2"`
	}
	simtest.MustUnmarshal(h.t, h.Get("/device/v1/devices/"+id), &d)
	if d.HeartbeatV2 == nil {
		return ""
	}
	return d.HeartbeatV2.Health
}

// findDevice returns the first device satisfying ok.
func (h *harness) findDevice(ok func(DeviceInfo) bool) DeviceInfo {
	h.t.Helper()
	for _, l := range h.sim.Locations() {
		for _, d := range h.sim.Devices(l.ID) {
			if ok(d) {
				return d
			}
		}
	}
	h.t.Fatal("no device matches")
	return DeviceInfo{}
}

func ofType(t deviceType) func(DeviceInfo) bool {
	return func(d DeviceInfo) bool { return d.Type == string(t) }
}

// syncable is a device fleetd may sync that has a lock.
func syncable(d DeviceInfo) bool {
	return d.CanSync() && d.Type != string(typeGuard) && d.Type != string(typeBikeRent) && len(d.Faults) == 0
}
