package simcheck

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/sim"
)

// t0 is the fake clock's start: a summer date, so Berlin is at +02.
var t0 = time.Date(2025, 6, 15, 10, 0, 0, 0, time.UTC)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// copriLongTime is COPRI's long timestamp shape, 2021-10-28 18:09:17.454818+02.
const copriLongTime = "2006-01-02 15:04:05.000000-07"

// clock is a settable fake clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// harness is a simulator behind an httptest server with a fake clock,
// driven only through the simulator's exported API and its HTTP routes.
type harness struct {
	t     *testing.T
	sim   *sim.Sim
	srv   *httptest.Server
	clock *clock
	token string
}

func testOptions() sim.Options {
	o := sim.DefaultOptions()
	o.Latency = 0
	o.Locations = 12
	o.DevicesPerLocation = 10
	o.CommandStepDelay = time.Second
	return o
}

func newHarness(t *testing.T, o sim.Options) *harness {
	t.Helper()
	c := &clock{now: t0}
	o.Now = c.Now
	s, err := sim.New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	h := &harness{t: t, sim: s, srv: srv, clock: c}
	h.token = h.fetchToken()
	return h
}

func (h *harness) fetchToken() string {
	h.t.Helper()
	resp, body := h.do(http.MethodPost, "/oauth2/token", "", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {sim.DefaultClientID}, "client_secret": {sim.DefaultClientSecret},
	}.Encode(), "application/x-www-form-urlencoded")
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("token: status %d: %s", resp.StatusCode, body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	mustUnmarshal(h.t, body, &tok)
	return tok.AccessToken
}

// do sends a request and returns the response and its body.
func (h *harness) do(method, path, token, body, contentType string) (*http.Response, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp, b
}

// get is an authenticated GET that must answer 200.
func (h *harness) get(path string) []byte {
	h.t.Helper()
	resp, body := h.do(http.MethodGet, path, h.token, "", "")
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("GET %s: status %d: %s", path, resp.StatusCode, body)
	}
	return body
}

// device fetches one device decoded with the client's types.
func (h *harness) device(id string) *bikeep.Device {
	h.t.Helper()
	var d bikeep.Device
	mustUnmarshal(h.t, h.get("/device/v1/devices/"+id), &d)
	return &d
}

// command posts a command and returns the status and the body.
func (h *harness) command(deviceID string, req map[string]any) (int, []byte) {
	h.t.Helper()
	b, _ := json.Marshal(req)
	resp, body := h.do(http.MethodPost, "/device/v1/devices/"+deviceID+"/commands", h.token, string(b), "application/json")
	return resp.StatusCode, body
}

func (h *harness) getCommand(id string) bikeep.Command {
	h.t.Helper()
	var c bikeep.Command
	mustUnmarshal(h.t, h.get("/device/v1/commands/"+id), &c)
	return c
}

// copri calls /APIjsonserver with GET parameters.
func (h *harness) copri(params url.Values) map[string]any {
	h.t.Helper()
	resp, body := h.do(http.MethodGet, "/APIjsonserver?"+params.Encode(), "", "", "")
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("copri %s: status %d", params.Get("request"), resp.StatusCode)
	}
	var m map[string]any
	mustUnmarshal(h.t, body, &m)
	return m
}

func (h *harness) copriLogin() string {
	h.t.Helper()
	m := h.copri(url.Values{"request": {"authorization"}, "merchant_id": {sim.DefaultCopriMerchant},
		"user_id": {sim.DefaultCopriUser}, "user_pw": {sim.DefaultCopriPassword}, "hw_id": {"fleetd-test-000001"}})
	env := m["shareejson"].(map[string]any)
	if !strings.HasPrefix(env["response_state"].(string), "OK") {
		h.t.Fatalf("login failed: %v", env["response_state"])
	}
	return env["authcookie"].(string)
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

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("unmarshal %.200s: %v", b, err)
	}
}
