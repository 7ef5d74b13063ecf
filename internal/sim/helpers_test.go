package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// t0 is the fake clock's start: a summer date, so Berlin is at +02.
var t0 = time.Date(2025, 6, 15, 10, 0, 0, 0, time.UTC)

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

// harness is a simulator behind an httptest server with a fake clock.
type harness struct {
	t     *testing.T
	sim   *Sim
	srv   *httptest.Server
	clock *clock
	token string
}

func testOptions() Options {
	o := DefaultOptions()
	o.Latency = 0
	o.Locations = 12
	o.DevicesPerLocation = 10
	o.CommandStepDelay = time.Second
	return o
}

func newHarness(t *testing.T, o Options) *harness {
	t.Helper()
	c := &clock{now: t0}
	o.Now = c.Now
	s, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	h := &harness{t: t, sim: s, srv: srv, clock: c}
	if o.ErrorRate == 0 {
		h.token = h.fetchToken()
	}
	return h
}

func (h *harness) fetchToken() string {
	h.t.Helper()
	resp, body := h.do(http.MethodPost, "/oauth2/token", "", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {DefaultClientID}, "client_secret": {DefaultClientSecret},
	}.Encode(), "application/x-www-form-urlencoded")
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("token: status %d: %s", resp.StatusCode, body)
	}
	var tok wireToken
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
	mustUnmarshal(h.t, h.get("/device/v1/devices/"+id), &d)
	if d.HeartbeatV2 == nil {
		return ""
	}
	return d.HeartbeatV2.Health
}

// command posts a command and returns the status and the decoded body.
func (h *harness) command(deviceID string, req map[string]any) (int, []byte) {
	h.t.Helper()
	b, _ := json.Marshal(req)
	resp, body := h.do(http.MethodPost, "/device/v1/devices/"+deviceID+"/commands", h.token, string(b), "application/json")
	return resp.StatusCode, body
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
	m := h.copri(url.Values{"request": {"authorization"}, "merchant_id": {DefaultCopriMerchant},
		"user_id": {DefaultCopriUser}, "user_pw": {DefaultCopriPassword}, "hw_id": {"fleetd-test-000001"}})
	env := m["shareejson"].(map[string]any)
	if !strings.HasPrefix(env["response_state"].(string), "OK") {
		h.t.Fatalf("login failed: %v", env["response_state"])
	}
	return env["authcookie"].(string)
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

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("unmarshal %.200s: %v", b, err)
	}
}
