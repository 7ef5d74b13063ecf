package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/sim/vocab"
	"github.com/fleetd/fleetd/internal/simtest"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestDeterministicBySeed(t *testing.T) {
	body := func(seed int64) ([]LocationInfo, [][]DeviceInfo, []byte) {
		o := testOptions()
		o.Seed = seed
		h := newHarness(t, o)
		locs := h.sim.Locations()
		var devs [][]DeviceInfo
		for _, l := range locs {
			devs = append(devs, h.sim.Devices(l.ID))
		}
		return locs, devs, h.Get("/device/v1/locations/" + locs[3].ID + "/devices")
	}
	l1, d1, b1 := body(7)
	l2, d2, b2 := body(7)
	l3, _, _ := body(8)
	if len(l1) != 12 || len(d1[0]) != 10 {
		t.Fatalf("fleet size: %d locations, %d devices in the first", len(l1), len(d1[0]))
	}
	if !slices.Equal(l1, l2) {
		t.Error("same seed, different locations")
	}
	for i := range d1 {
		for j := range d1[i] {
			a, b := d1[i][j], d2[i][j]
			if a.ID != b.ID || a.Alias != b.Alias || a.Type != b.Type || !slices.Equal(a.Commands, b.Commands) {
				t.Fatalf("same seed, different device %d/%d: %+v vs %+v", i, j, a, b)
			}
		}
	}
	// The URIs name the httptest host, which differs per server.
	hostRE := regexp.MustCompile(`http://127\.0\.0\.1:\d+`)
	if !bytes.Equal(hostRE.ReplaceAll(b1, nil), hostRE.ReplaceAll(b2, nil)) {
		t.Error("same seed, different device list JSON")
	}
	if l1[0].ID == l3[0].ID {
		t.Error("different seeds gave the same first location id")
	}
}

func TestFleetShape(t *testing.T) {
	o := testOptions()
	o.Locations = 60
	h := newHarness(t, o)
	aliasRE := regexp.MustCompile(`^[A-Z]{2,3}-\d{4}-\d{2}$`)
	types := map[string]int{}
	locTypes := map[string]int{}
	var deepSleep, noAuto, legacy int
	names := map[string]bool{}
	for _, l := range h.sim.Locations() {
		locTypes[l.Type]++
		if names[l.Name] {
			t.Errorf("duplicate location name %q", l.Name)
		}
		names[l.Name] = true
		for _, d := range h.sim.Devices(l.ID) {
			types[d.Type]++
			if !uuidRE.MatchString(d.ID) || !aliasRE.MatchString(d.Alias) {
				t.Errorf("id %q alias %q", d.ID, d.Alias)
			}
			if d.SleepState == string(sleepDeep) && d.PowerSaveStrategy == string(powerLocalWakeup) {
				deepSleep++
			}
			if slices.Contains(d.Tags, "no-auto-remediation") {
				noAuto++
			}
			switch deviceType(d.Type) {
			case typeBikeHouseDoor:
				if !slices.Equal(d.Commands, []string{"unlock"}) {
					t.Errorf("BIKE_HOUSE_DOOR commands %v, want only unlock", d.Commands)
				}
			case typeGuard:
				if !slices.Contains(d.Commands, "sync-device") || slices.Contains(d.Commands, "lock") {
					t.Errorf("GUARD commands %v", d.Commands)
				}
			case typeLocker, typeBikeDock:
				for _, c := range []string{"lock", "unlock", "book", "cancel-booking", "force-lock", "force-unlock", "force-cancel-booking"} {
					if !slices.Contains(d.Commands, c) {
						t.Errorf("%s lacks %s: %v", d.Type, c, d.Commands)
					}
				}
				if !slices.Contains(d.Commands, "sync-device") {
					legacy++
				}
			case typeBikeRent:
				if d.Bike != d.Alias {
					t.Errorf("bike %q for alias %q", d.Bike, d.Alias)
				}
			}
		}
	}
	for _, lt := range []locationType{locBikeLockers, locBikeDocks, locBikeHouse} {
		if locTypes[string(lt)] == 0 {
			t.Errorf("no %s location in %v", lt, locTypes)
		}
	}
	for _, dt := range []deviceType{typeGuard, typeLocker, typeBikeDock, typeBikeHouseDoor, typeBikeRent} {
		if types[string(dt)] == 0 {
			t.Errorf("no %s device in %v", dt, types)
		}
	}
	if deepSleep == 0 || noAuto == 0 {
		t.Errorf("deep-sleeping LOCAL_WAKEUP devices %d, no-auto-remediation devices %d: want some of each", deepSleep, noAuto)
	}
	t.Logf("types %v, legacy (no sync) %d", types, legacy)
}

// keys collects the key paths of a JSON document, descending into objects;
// the commands map is open (keys are command names), so it stops there.
func keys(prefix string, v any, out map[string]bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return
	}
	for k, sub := range m {
		p := prefix + k
		out[p] = true
		if k == "commands" || sub == nil {
			continue
		}
		keys(p+".", sub, out)
	}
}

func sortedKeys(m map[string]bool) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// referenceExample is an example payload of the reference text itself
// (docs/vendor), not a copy of it.
func referenceExample(t *testing.T, endpoint string) map[string]any {
	t.Helper()
	ref, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := vocab.Example(ref, endpoint, false)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestDeviceJSONHasEveryReferenceKey(t *testing.T) {
	var refDoc any = referenceExample(t, "/device/v1/devices/{device_id}")
	want := map[string]bool{}
	keys("", refDoc, want)

	h := newHarness(t, testOptions())
	// Union over the fleet: nullable objects (user, price_list) are null on
	// some devices; every key must appear somewhere and no key may be extra.
	got := map[string]bool{}
	perDevice, users := 0, 0
	for _, l := range h.sim.Locations() {
		var list struct {
			Data []map[string]any `json:"data"`
			URI  string           `json:"uri"`
		}
		simtest.MustUnmarshal(t, h.Get("/device/v1/locations/"+l.ID+"/devices"), &list)
		if !strings.HasSuffix(list.URI, "/device/v1/locations/"+l.ID+"/devices") {
			t.Errorf("list uri %q", list.URI)
		}
		for _, d := range list.Data {
			perDevice++
			top := map[string]bool{}
			keys("", map[string]any(d), got)
			for k := range d {
				top[k] = true
			}
			// Top-level keys are present on every device, null or not.
			for k := range refDoc.(map[string]any) {
				if !top[k] {
					t.Fatalf("device %v lacks key %q", d["id"], k)
				}
			}
			// price_list is served on every device; user only where a user
			// occupies it (it needs permissions, so null is documented).
			if pl, ok := d["price_list"].(map[string]any); !ok || pl["id"] == "" || pl["uri"] == "" {
				t.Errorf("device %v price_list %v", d["id"], d["price_list"])
			}
			if u, ok := d["user"].(map[string]any); ok {
				users++
				if u["id"] == "" || u["access_key"] == "" {
					t.Errorf("device %v user %v", d["id"], u)
				}
			}
		}
	}
	if perDevice == 0 {
		t.Fatal("no devices")
	}
	if users == 0 || users == perDevice {
		t.Errorf("%d of %d devices have a user: want some occupied, some free", users, perDevice)
	}
	for _, k := range sortedKeys(want) {
		if !got[k] {
			t.Errorf("reference key %q never present", k)
		}
	}
	for _, k := range sortedKeys(got) {
		if !want[k] {
			t.Errorf("extra key %q not in the reference", k)
		}
	}
}

func TestCommandJSONHasEveryReferenceKey(t *testing.T) {
	var refDoc any = referenceExample(t, "/device/v1/commands/{command_id}")
	want := map[string]bool{}
	keys("", refDoc, want)
	want["events"] = true // arrays: compare the element keys separately

	h := newHarness(t, testOptions())
	d := h.findDevice(syncable)
	status, body := h.Command(d.ID, map[string]any{"command": "sync-device"})
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	var doc map[string]any
	simtest.MustUnmarshal(t, body, &doc)
	got := map[string]bool{}
	keys("", doc, got)
	if !slices.Equal(sortedKeys(got), sortedKeys(want)) {
		t.Errorf("command keys\n got %v\nwant %v", sortedKeys(got), sortedKeys(want))
	}
	ev := doc["events"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "value", "timestamp"} {
		if _, ok := ev[k]; !ok {
			t.Errorf("event lacks %q", k)
		}
	}
}

func TestDeprecatedAndHealthyFields(t *testing.T) {
	h := newHarness(t, testOptions())
	for _, l := range h.sim.Locations() {
		var list struct {
			Data []map[string]any `json:"data"`
		}
		simtest.MustUnmarshal(t, h.Get("/device/v1/locations/"+l.ID+"/devices"), &list)
		for _, d := range list.Data {
			if d["wifi_rssi"] != nil || d["heartbeat_latency"] != nil {
				t.Errorf("wifi_rssi %v heartbeat_latency %v: want null", d["wifi_rssi"], d["heartbeat_latency"])
			}
			if d["nr"] != d["alias"] {
				t.Errorf("nr %v != alias %v", d["nr"], d["alias"])
			}
			if s, _ := d["heartbeat"].(string); s == "" {
				t.Errorf("heartbeat %v: want a simulated string", d["heartbeat"])
			}
			if hb, ok := d["heartbeat_v2"].(map[string]any); ok {
				if hb["latency_millis"] != float64(0) || hb["sent_at"] == nil || hb["dead_since"] != nil {
					t.Errorf("heartbeat_v2 %v", hb)
				}
			}
			for name, uri := range d["commands"].(map[string]any) {
				if uri != d["uri"].(string)+"/commands" {
					t.Errorf("command %s uri %v", name, uri)
				}
			}
		}
	}
}

func TestTokenFlow(t *testing.T) {
	h := newHarness(t, testOptions())
	tests := []struct {
		name       string
		form       url.Values
		basic      [2]string
		wantStatus int
		wantError  string
	}{
		{name: "form", form: url.Values{"grant_type": {"client_credentials"}, "client_id": {DefaultClientID}, "client_secret": {DefaultClientSecret}}, wantStatus: 200},
		{name: "basic", form: url.Values{"grant_type": {"client_credentials"}}, basic: [2]string{DefaultClientID, DefaultClientSecret}, wantStatus: 200},
		{name: "wrong secret", form: url.Values{"grant_type": {"client_credentials"}, "client_id": {DefaultClientID}, "client_secret": {"nope"}}, wantStatus: 401, wantError: "invalid_client"},
		{name: "wrong basic", form: url.Values{"grant_type": {"client_credentials"}}, basic: [2]string{"x", "y"}, wantStatus: 401, wantError: "invalid_client"},
		{name: "wrong grant", form: url.Values{"grant_type": {"password"}, "client_id": {DefaultClientID}, "client_secret": {DefaultClientSecret}}, wantStatus: 400, wantError: "unsupported_grant_type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/oauth2/token", strings.NewReader(tc.form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.basic[0] != "" {
				req.SetBasicAuth(tc.basic[0], tc.basic[1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var m map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d (%v)", resp.StatusCode, tc.wantStatus, m)
			}
			if tc.wantError != "" {
				if m["error"] != tc.wantError {
					t.Errorf("error %v, want %s", m["error"], tc.wantError)
				}
				return
			}
			if m["token_type"] != "Bearer" || m["expires_in"] != float64(3600) || len(m["access_token"].(string)) < 20 {
				t.Errorf("token response %v", m)
			}
		})
	}

	t.Run("bearer enforced and expiring", func(t *testing.T) {
		var ids []string
		for _, tok := range []string{"", "bogus"} {
			resp, body := h.Do(http.MethodGet, "/location/v1/locations", tok, "", "")
			var e map[string]any
			simtest.MustUnmarshal(t, body, &e)
			if resp.StatusCode != 401 || e["error_code"] != "ERRORS.UNAUTHORIZED" || e["status_code"] != float64(401) {
				t.Errorf("token %q: status %d body %s", tok, resp.StatusCode, body)
			}
			id, _ := e["correlation_id"].(string)
			if !uuidRE.MatchString(id) {
				t.Errorf("correlation_id %q is not a UUID", id)
			}
			ids = append(ids, id)
		}
		if ids[0] == ids[1] {
			t.Error("correlation ids repeat")
		}
		h.Get("/location/v1/locations") // valid
		h.clock.Add(time.Hour + time.Second)
		resp, body := h.Do(http.MethodGet, "/location/v1/locations", h.Token, "", "")
		if resp.StatusCode != 401 || !strings.Contains(string(body), "ERRORS.UNAUTHORIZED") {
			t.Errorf("expired token: status %d %s", resp.StatusCode, body)
		}
		h.Token = h.FetchToken()
		h.Get("/location/v1/locations")
	})
}

func TestNotFound(t *testing.T) {
	h := newHarness(t, testOptions())
	for _, p := range []string{
		"/device/v1/devices/00000000-0000-4000-8000-000000000000",
		"/device/v1/locations/nope/devices",
		"/device/v1/commands/nope",
	} {
		resp, body := h.Do(http.MethodGet, p, h.Token, "", "")
		var e wireError
		simtest.MustUnmarshal(t, body, &e)
		if resp.StatusCode != 404 || e.ErrorCode != "ERRORS.NOT_FOUND" || e.StatusCode != 404 || !uuidRE.MatchString(e.CorrelationID) {
			t.Errorf("%s: %d %s", p, resp.StatusCode, body)
		}
	}
}

func TestLocationErrorHook(t *testing.T) {
	h := newHarness(t, testOptions())
	loc := h.sim.Locations()[1]
	path := "/device/v1/locations/" + loc.ID + "/devices"
	h.sim.SetLocationError(loc.ID, 503)
	resp, body := h.Do(http.MethodGet, path, h.Token, "", "")
	var e wireError
	simtest.MustUnmarshal(t, body, &e)
	if resp.StatusCode != 503 || e.StatusCode != 503 || e.ErrorCode != "ERRORS.SERVICE_UNAVAILABLE" {
		t.Errorf("status %d body %s", resp.StatusCode, body)
	}
	h.sim.SetLocationError(loc.ID, 0)
	h.Get(path)

	// The same through the HTTP hook.
	resp, body = h.Do(http.MethodPost, "/sim/v1/locations/"+loc.ID+"/error", "", `{"status":500}`, "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("hook: %d %s", resp.StatusCode, body)
	}
	resp, _ = h.Do(http.MethodGet, path, h.Token, "", "")
	if resp.StatusCode != 500 {
		t.Errorf("after hook: status %d, want 500", resp.StatusCode)
	}
	// Other locations are unaffected.
	h.Get("/device/v1/locations/" + h.sim.Locations()[2].ID + "/devices")
	h.Do(http.MethodPost, "/sim/v1/locations/"+loc.ID+"/error", "", `{"status":0}`, "application/json")
	h.Get(path)
}

func TestDeviceListCache(t *testing.T) {
	h := newHarness(t, testOptions())
	locs := h.sim.Locations()
	a, b := locs[0], locs[1]
	base := h.srv.URL
	first := h.sim.locationBody(h.sim.locByID[a.ID], base)
	again := h.sim.locationBody(h.sim.locByID[a.ID], base)
	if &first[0] != &again[0] {
		t.Error("second request rebuilt the body")
	}
	other := h.sim.locationBody(h.sim.locByID[b.ID], base)
	if err := h.sim.SetFault(h.sim.Devices(a.ID)[1].ID, FaultUnhealthy); err != nil {
		t.Fatal(err)
	}
	after := h.sim.locationBody(h.sim.locByID[a.ID], base)
	if bytes.Equal(first, after) || !bytes.Contains(after, []byte(`"UNHEALTHY"`)) {
		t.Error("fault did not invalidate the location's cache")
	}
	if o2 := h.sim.locationBody(h.sim.locByID[b.ID], base); &o2[0] != &other[0] {
		t.Error("fault elsewhere invalidated an unrelated location")
	}
}

func TestLatencyIsContextAware(t *testing.T) {
	o := testOptions()
	o.Latency = 80 * time.Millisecond
	h := newHarness(t, o)
	start := time.Now()
	h.Get("/location/v1/locations")
	if el := time.Since(start); el < 80*time.Millisecond {
		t.Errorf("request took %v, want ≥ latency", el)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.srv.URL+"/location/v1/locations", nil)
	if _, err := h.srv.Client().Do(req); err == nil {
		t.Error("request outlived its context")
	}
}

func TestErrorInjection(t *testing.T) {
	o := testOptions()
	o.ErrorRate = 1
	o.HangDuration = 20 * time.Millisecond
	h := newHarness(t, o) // no token: faults strike before authentication
	statuses := map[int]int{}
	var malformed int
	for range 120 {
		resp, body := h.Do(http.MethodGet, "/location/v1/locations", "x", "", "")
		statuses[resp.StatusCode]++
		if resp.StatusCode == 200 && !json.Valid(body) {
			malformed++
		}
	}
	for _, st := range []int{500, 502, 503, 429, 504} {
		if statuses[st] == 0 {
			t.Errorf("no %d among %v", st, statuses)
		}
	}
	if malformed == 0 {
		t.Errorf("no malformed JSON among %v", statuses)
	}
	st := h.sim.Stats()
	var total int64
	for _, n := range st.InjectedErrors {
		total += n
	}
	if total < 120 {
		t.Errorf("injected %d errors, want ≥ 120", total)
	}
}

func TestStart(t *testing.T) {
	o := testOptions()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	base, err := s.Start(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(base + "/sim/v1/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, ok := st.Requests[routeLocDevices]; !ok || len(st.Faults) != len(FaultKinds()) {
		t.Errorf("stats %+v", st)
	}
	cancel()
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop")
	}
}

// TestConcurrentUse exercises readers, commands, hooks and Step at once
// (run with -race).
func TestConcurrentUse(t *testing.T) {
	o := testOptions()
	o.FaultRate, o.CureRate = 0.05, 0.2
	h := newHarness(t, o)
	locs := h.sim.Locations()
	devs := h.sim.Devices(locs[0].ID)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				l := locs[(w+i)%len(locs)]
				resp, err := h.srv.Client().Do(authReq(h, "/device/v1/locations/"+l.ID+"/devices"))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	for i := range 200 {
		d := devs[i%len(devs)]
		_ = h.sim.SetFault(d.ID, FaultUnhealthy)
		h.Command(d.ID, map[string]any{"command": "sync-device"})
		h.stepTo(time.Second)
		h.Get("/location/v1/locations")
		_ = h.sim.Stats()
	}
	close(done)
	wg.Wait()
}

func authReq(h *harness, path string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, h.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+h.Token)
	return req
}
