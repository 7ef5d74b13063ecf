package bikeep_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/record"
	"github.com/fleetd/fleetd/internal/sim"
)

// simBodies returns every location's device-list body of a simulated fleet
// in which every fault kind the simulator knows is injected into some
// devices, as served over HTTP.
func simBodies(t testing.TB, locations, perLoc int) [][]byte {
	t.Helper()
	s, err := sim.New(sim.Options{Seed: 7, Locations: locations, DevicesPerLocation: perLoc})
	if err != nil {
		t.Fatal(err)
	}
	injected := map[sim.FaultKind]int{}
	n := 0
	for _, l := range s.Locations() {
		for _, d := range s.Devices(l.ID) {
			k := sim.FaultKinds()[n%len(sim.FaultKinds())]
			n++
			if n%3 != 0 { // leave two thirds healthy
				continue
			}
			if s.SetFault(d.ID, k) == nil {
				injected[k]++
			}
		}
	}
	for _, k := range sim.FaultKinds() {
		if injected[k] == 0 && locations >= 10 { // small fleets may lack rental bikes
			t.Fatalf("fault %s was never injected", k)
		}
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)

	resp, err := http.PostForm(srv.URL+"/oauth2/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {sim.DefaultClientID}, "client_secret": {sim.DefaultClientSecret},
	})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	get := func(path string) []byte {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return b
	}
	var bodies [][]byte
	for _, l := range s.Locations() {
		bodies = append(bodies, get("/device/v1/locations/"+l.ID+"/devices"))
	}
	return bodies
}

func TestListDecoderAgreesWithFullDecoderOnSimulatedFleet(t *testing.T) {
	bodies := simBodies(t, 24, 40)
	ld := bikeep.NewListDecoder(0, nil)
	kinds := map[string]bool{}
	for i, b := range bodies {
		want := reference(b)
		got, err := streamed(ld, b, nil)
		if err != nil {
			t.Fatalf("location %d: %v", i, err)
		}
		if d := diff(want, got); d != "" {
			t.Fatalf("location %d: %s", i, d)
		}
		if want.list != good || len(want.devices) != 40 {
			t.Fatalf("location %d: %s with %d devices, want 40 good", i, want.list, len(want.devices))
		}
		for _, d := range got.devices {
			kinds[d.HealthName()+"/"+d.HardwareStateName()] = true
		}
		// Decoding again against the previous records changes nothing.
		again, err := streamed(ld, b, got.devices)
		if err != nil || diff(want, again) != "" {
			t.Fatalf("location %d, second walk: %v %s", i, err, diff(want, again))
		}
	}
	for _, k := range []string{"DEAD/NORMAL", "LONG_DEAD/NORMAL", "UNHEALTHY/NORMAL", "HEALTHY/ERROR",
		"HEALTHY/NOT_RESPONDING", "HEALTHY/QUANTUM_FLUX", "HEALTHY/DISABLED"} {
		if !kinds[k] {
			t.Errorf("no device with health/hardware %s in the fleet: the fault injection did not show", k)
		}
	}
}

// device is a valid element that hostile cases start from.
const device = `{"id":"d1","alias":"KA-1","code":"c","type":"BIKE_DOCK","hardware_id":"h","state":{"changed_at":"2025-01-15T12:00:00Z","value":"LOCKED","timeout_at":null},"lock_state":"LOCKED","hardware_state":"NORMAL","heartbeat_v2":{"sent_at":"2025-01-15T12:00:00Z","latency_millis":0,"health":"HEALTHY","dead_since":null},"commands":{"sync-device":"https://x/sync","lock":"https://x/lock","frobnicate":"https://x/f"},"tags":["a","b"],"sleep_state":"","power_save_strategy":"NONE"}`

func list(elems ...string) string { return `{"data":[` + strings.Join(elems, ",") + `],"uri":"u"}` }

func TestListDecoderHostileBodies(t *testing.T) {
	deep := strings.Repeat(`{"x":`, 10001) + `1` + strings.Repeat(`}`, 10001)
	huge := strings.Repeat("ä", 200_000)
	for _, tc := range []struct {
		name    string
		body    string
		list    class
		classes []class // nil: not checked beyond the list class
	}{
		{"reference payload", string(readFixture(t, "device_list.json")), good, []class{good}},
		{"empty list", `{"data":[]}`, good, []class{}},
		{"not an object", `[]`, failed, nil},
		{"empty body", ``, failed, nil},
		{"data null", `{"data":null}`, failed, nil},
		{"data missing", `{"uri":"u"}`, failed, nil},
		{"data an object", `{"data":{}}`, failed, nil},
		{"data twice: the last one counts, as in encoding/json", `{"data":[],"data":[` + device + `]}`, good, []class{good}},
		{"truncated body: the devices before the break, the rest unknown", list(device, device)[:600], good, []class{good, undecodable}},
		{"trailing garbage", list(device) + `x`, failed, nil},
		{"second top-level value", list(device) + `{}`, failed, nil},
		{"nested past the depth limit", `{"data":[` + strings.Replace(device, `"alias"`, `"deep":`+deep+`,"alias"`, 1) + `]}`, good, []class{undecodable}},
		{"nested deep within the limit", list(strings.Replace(device, `"alias"`, `"deep":`+strings.Repeat(`[`, 500)+strings.Repeat(`]`, 500)+`,"alias"`, 1), device), good, []class{good, good}},
		{"null element", list(device, `null`, device), good, []class{good, undecodable, good}},
		{"wrong element types", list(`1`, `"x"`, `[]`, `true`, device), good, []class{undecodable, undecodable, undecodable, undecodable, good}},
		{"wrong field type", list(strings.Replace(device, `"alias":"KA-1"`, `"alias":5`, 1), device), good, []class{undecodable, good}},
		{"wrong bool", list(strings.Replace(device, `"code":"c"`, `"code":"c","has_camera":"yes"`, 1)), good, []class{undecodable}},
		{"number out of range", list(strings.Replace(device, `"code":"c"`, `"code":"c","wifi_rssi":1e999`, 1)), good, []class{undecodable}},
		{"bad timestamp", list(strings.Replace(device, `2025-01-15T12:00:00Z","value"`, `2025-13-45T99:00:00Z","value"`, 1), device), good, []class{undecodable, good}},
		{"bad deprecated timestamp", list(strings.Replace(device, `"sent_at":"2025-01-15T12:00:00Z"`, `"sent_at":12`, 1)), good, []class{undecodable}},
		{"timestamp before 1970", list(strings.Replace(device, `"dead_since":null`, `"dead_since":"1969-12-31T23:59:59Z"`, 1)), good, []class{undecodable}},
		{"timestamp after 2262", list(strings.Replace(device, `"dead_since":null`, `"dead_since":"9999-12-31T23:59:59Z"`, 1)), good, []class{undecodable}},
		{"zero timestamp is none", list(strings.Replace(device, `"dead_since":null`, `"dead_since":"0001-01-01T00:00:00Z"`, 1)), good, []class{good}},
		{"command value not a string", list(strings.Replace(device, `"lock":"https://x/lock"`, `"lock":1`, 1)), good, []class{undecodable}},
		{"duplicate key: the last one counts, as in encoding/json", list(strings.Replace(device, `"alias":"KA-1"`, `"alias":"KA-1","alias":"KA-2"`, 1), device), good, []class{good, good}},
		{"duplicate id: the last one counts", list(strings.Replace(device, `"alias":"KA-1"`, `"id":"d2","alias":"KA-1"`, 1), device), good, []class{good, good}},
		{"duplicate command", list(strings.Replace(device, `"lock":"https://x/lock"`, `"lock":"a","lock":"b"`, 1), device), good, []class{good, good}},
		{"invalid UTF-8 in id", list(strings.Replace(device, `"d1"`, "\"utf8-d1\xff\xfe\"", 1), device), good, []class{undecodable, good}},
		{"invalid UTF-8 in an unread field is replaced", list(strings.Replace(device, `"code":"c"`, "\"code\":\"c\",\"comment\":\"\xff\"", 1), device), good, []class{good, good}},
		{"lone surrogate in an alias is replaced", list(strings.Replace(device, `"alias":"KA-1"`, `"alias":"\ud800"`, 1), device), good, []class{good, good}},
		{"lone surrogate in an id: U+FFFD is refused", list(strings.Replace(device, `"id":"d1"`, `"id":"\ud800"`, 1), device), good, []class{undecodable, good}},
		{"invalid UTF-8 in the envelope", `{"uri":"` + "\xff" + `","data":[` + device + `]}`, good, []class{good}},
		{"missing id", list(strings.Replace(device, `"id":"d1",`, ``, 1)), good, []class{undecodable}},
		{"empty id", list(strings.Replace(device, `"id":"d1"`, `"id":""`, 1)), good, []class{undecodable}},
		{"null id", list(strings.Replace(device, `"id":"d1"`, `"id":null`, 1)), good, []class{undecodable}},
		{"id over its cap", list(strings.Replace(device, `"d1"`, `"`+strings.Repeat("i", 129)+`"`, 1), device), good, []class{undecodable, good}},
		{"huge alias is capped", list(strings.Replace(device, `"KA-1"`, `"`+huge+`"`, 1)), good, []class{good}},
		{"keys match case-insensitively, as in encoding/json", list(strings.Replace(device, `"id":"d1"`, `"ID":"d1"`, 1)), good, []class{good}},
		{"location id held to limits.ID", list(strings.Replace(device, `"code":"c"`, `"code":"c","location":{"id":"`+strings.Repeat("l", 200)+`"}`, 1), device), good, []class{undecodable, good}},
		{"more tags than kept", list(strings.Replace(device, `"tags":["a","b"]`, `"tags":[`+strings.Repeat(`"t",`, 80)+`"t"]`, 1)), good, []class{good}},
		{"escaped key is the key", list(strings.Replace(device, `"alias":"KA-1"`, `"\u0061lias":"K\u0041-1"`, 1)), good, []class{good}},
		{"unknown fields skipped", list(strings.Replace(device, `"code":"c"`, `"code":"c","future":{"a":[1,2,{"b":null}]}`, 1)), good, []class{good}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			want := reference(body)
			got, err := streamed(bikeep.NewListDecoder(0, nil), body, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := diff(want, got); d != "" {
				t.Fatalf("stream and full decoder disagree: %s", d)
			}
			if got.list != tc.list {
				t.Fatalf("location %s, want %s", got.list, tc.list)
			}
			if tc.classes != nil && strings.Join(toStrings(got.classes), ",") != strings.Join(toStrings(tc.classes), ",") {
				t.Fatalf("elements %v, want %v", got.classes, tc.classes)
			}
			for _, d := range got.devices {
				if len(d.Alias) > 256 {
					t.Fatalf("alias of %d bytes kept", len(d.Alias))
				}
			}
		})
	}
}

func toStrings(cs []class) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = string(c)
	}
	return out
}

func readFixture(t testing.TB, name string) []byte {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestListDecoderRecord(t *testing.T) {
	devs, err := bikeep.NewListDecoder(0, nil).Decode(strings.NewReader(list(
		strings.Replace(device, `"type":"BIKE_DOCK"`, `"type":"TELEPORTER"`, 1))), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := devs[0]
	changed, _ := time.Parse(time.RFC3339, "2025-01-15T12:00:00Z")
	switch {
	case d.ID != "d1" || d.Alias != "KA-1" || d.Code != "c" || d.HardwareID != "h":
		t.Errorf("strings: %+v", d)
	case d.Type != record.TypeOther || d.TypeName() != "TELEPORTER":
		t.Errorf("undocumented type: %v %q", d.Type, d.TypeName())
	case d.State != record.StateLocked || d.LockState != record.LockLocked || d.Health != record.HealthHealthy:
		t.Errorf("enums: %+v", d)
	case !d.StateChangedAt.Time().Equal(changed) || !d.StateTimeoutAt.IsZero() || !d.DeadSince.IsZero():
		t.Errorf("timestamps: %+v", d)
	case !d.Supports(record.CmdSyncDevice) || !d.Supports(record.CmdLock) || d.Supports(record.CmdUnlock) || d.Supports("frobnicate"):
		t.Errorf("commands: %v", d.Commands.Names())
	case strings.Join(d.Tags, ",") != "a,b":
		t.Errorf("tags: %v", d.Tags)
	}
}

// An unchanged location shares the previous slice and allocates nothing
// per device; a changed device gets new strings only where it changed.
func TestListDecoderSharesUnchangedRecords(t *testing.T) {
	bodies := simBodies(t, 2, 50)
	ld := bikeep.NewListDecoder(0, nil)
	prev, err := ld.DecodeBytes(bodies[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		got, err := ld.DecodeBytes(bodies[0], prev)
		if err != nil || &got[0] != &prev[0] {
			t.Fatalf("unchanged location not shared: %v", err)
		}
	})
	if allocs > 1 && !raceEnabled {
		t.Errorf("%.0f allocations decoding an unchanged 50-device location, want at most 1", allocs)
	}
	changed := strings.Replace(string(bodies[0]), `"alias":"`+prev[3].Alias+`"`, `"alias":"RENAMED"`, 1)
	got, err := ld.DecodeBytes([]byte(changed), prev)
	if err != nil {
		t.Fatal(err)
	}
	if &got[0] == &prev[0] || got[3].Alias != "RENAMED" {
		t.Fatalf("a changed location must get a new slice with the new alias")
	}
	if got[4].Alias != prev[4].Alias || !got[4].Equal(&prev[4]) {
		t.Fatalf("unchanged device 4 differs")
	}
}

func FuzzListDecoder(f *testing.F) {
	for _, n := range []string{"device_list.json", "device.json", "locations.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		``, `null`, `[]`, `{}`, `{"data":null}`, `{"data":[null]}`, `{"data":[{"id":"a","has_camera":"yes"}]}`,
		`{"data":[{"state":{"changed_at":"2025-13-45T99:00:00Z"}}]}`, `{"data":[{"heartbeat_v2":null,"state":null}]}`,
		`{"data":[1,"x",[],{}]}`, list(device, device), list(strings.Replace(device, `"alias":"KA-1"`, `"alias":"KA-1","alias":"x"`, 1)),
		list(strings.Replace(device, `"d1"`, "\"d\xff\"", 1)), list(device)[:200],
	} {
		f.Add([]byte(s))
	}
	ld := bikeep.NewListDecoder(1<<20, nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		want := reference(b)
		got, err := streamed(ld, b, nil)
		if err != nil {
			t.Fatal(err)
		}
		if d := diff(want, got); d != "" {
			t.Fatalf("stream and full decoder disagree: %s", d)
		}
		// Decoding against the previous records gives the same result.
		again, err := streamed(ld, b, got.devices)
		if err != nil {
			t.Fatal(err)
		}
		if d := diff(want, again); d != "" {
			t.Fatalf("second decode with previous records: %s", d)
		}
	})
}

func BenchmarkListDecoder(b *testing.B) {
	bodies := simBodies(b, 2, 50)
	ld := bikeep.NewListDecoder(0, nil)
	prev, _ := ld.DecodeBytes(bodies[0], nil)
	b.SetBytes(int64(len(bodies[0])))
	b.ReportAllocs()
	for b.Loop() {
		ld.DecodeBytes(bodies[0], prev)
	}
}
