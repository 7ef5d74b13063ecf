package vocab

import (
	"os"
	"slices"
	"strings"
	"testing"
)

const referencePath = "../../../docs/vendor/bikeep-parking-device-api.txt"

func reference(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestExtractReference pins what the reference text documents, field by
// field, in the reference's order.
func TestExtractReference(t *testing.T) {
	v, err := Extract(reference(t))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"command.state.value":        {"NOT_SENT", "SENT", "ERROR", "RECEIVED", "SUCCESS"},
		"device.sleep_state":         {"", "LIGHT_SLEEP", "DEEP_SLEEP"},
		"device.type":                {"GUARD", "BIKE_DOCK", "SCOOTER_DOCK", "LOCKER", "BIKE_HOUSE_DOOR", "BIKE_RENT", "SCOOTER_RENT", "DOCK", "DOCK_SESSIONLESS", "DOOR"},
		"device.state.value":         {"ALLOCATED", "LOCKED", "LOCKING", "UNLOCKED", "UNLOCKING", "BOOKED"},
		"device.heartbeat_v2.health": {"HEALTHY", "UNHEALTHY", "DEAD", "LONG_DEAD"},
		"device.lock_state":          {"LOCKED", "UNLOCKED"},
		"device.heartbeat_health":    {"HEALTHY", "UNHEALTHY", "DEAD"},
		"device.power_save_strategy": {"NONE", "REMOTE_WAKEUP", "LOCAL_WAKEUP"},
		"device.hardware_state":      {"NORMAL", "DISABLED", "DISABLED_LOCKING", "DISABLED_UNLOCKING", "ERROR", "NOT_RESPONDING"},
		"command_request.reason":     {"STUCK_USER_RFID_ISSUE", "STUCK_USER_APP_ISSUE", "STUCK_USER_USER_ERROR", "STUCK_USER_OTHER_ISSUE", "LOCKED_EMPTY", "MAINTENANCE", "TESTING", "RENTAL_VEHICLE_LOCKED", "FALSE_LOCK", "OTHER"},
		"command_request.command":    {"lock", "book", "force-lock", "force-cancel-booking", "unlock", "cancel-booking", "force-unlock", "sync-device", "take-photo"},
	}
	got := v.Fields()
	wantFields := []string{"command.state.value", "device.sleep_state", "device.type", "device.state.value",
		"device.heartbeat_v2.health", "device.lock_state", "device.heartbeat_health", "device.power_save_strategy",
		"device.hardware_state", "command_request.reason", "command_request.command"}
	if !slices.Equal(got, wantFields) {
		t.Errorf("fields\n got %q\nwant %q", got, wantFields)
	}
	for f, vals := range want {
		t.Run(f, func(t *testing.T) {
			if got := v.Values(f); !slices.Equal(got, vals) {
				t.Errorf("values\n got %q\nwant %q", got, vals)
			}
		})
	}
	if !v.Has("device.type", "BIKE_HOUSE_DOOR") || v.Has("device.type", "BIKE_HOUSE") || v.Has("device.lock_state", "") {
		t.Error("Has answers wrongly")
	}
	if !v.HasAnywhere("LONG_DEAD") || v.HasAnywhere("QUANTUM_FLUX") {
		t.Error("HasAnywhere answers wrongly")
	}
}

func TestFormatParseRoundTrip(t *testing.T) {
	v, err := Extract(reference(t))
	if err != nil {
		t.Fatal(err)
	}
	b := v.Format()
	if !strings.HasPrefix(string(b), Header) || !strings.Contains(string(b), "device.sleep_state \"\"\n") {
		t.Fatalf("format:\n%s", b)
	}
	back, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Fields(), v.Fields()) {
		t.Fatalf("fields %v after a round trip, want %v", back.Fields(), v.Fields())
	}
	for _, f := range v.Fields() {
		if !slices.Equal(back.Values(f), v.Values(f)) {
			t.Errorf("%s: %q after a round trip, want %q", f, back.Values(f), v.Values(f))
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for name, in := range map[string]string{
		"empty":          "# only a comment\n",
		"no value":       "device.type\n",
		"unquoted value": "device.type GUARD\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse([]byte(in)); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// snippet is a minimal reference in the vendor's rendering, with the enum
// lines given.
func snippet(endpoint, enumLines, example string) string {
	return "Parking Device\n" + endpoint + "\nGet parking device\nResponses\n200 response\ntype\nstring\n" + enumLines +
		"\nalias\nstring\n" + example + "\n"
}

func TestExtractRefusesToGuess(t *testing.T) {
	const ex = "{\n\"type\": \"GUARD\",\n\"alias\": \"string\"\n}"
	tests := []struct {
		name, in, wantErr string
	}{
		{"glued line without boundaries", snippet("/device/v1/devices/{device_id}", "GUARDLOCKER", ex), "gluedRuns"},
		{"unknown endpoint", snippet("/device/v2/things/{id}", "GUARD\nLOCKER", ex), "not one this extractor knows"},
		{"field not in the example", snippet("/device/v1/devices/{device_id}", "GUARD\nLOCKER", "{\n\"alias\": \"string\"\n}"), "not in the example"},
		{"no enum at all", "Parking Device\nnothing here\n", "no enum field"},
		{
			"two endpoints disagree",
			snippet("/device/v1/devices/{device_id}", "GUARD\nLOCKER", ex) +
				snippet("/device/v1/commands/{command_id}", "X\nY", ex) +
				snippet("/device/v1/locations/{location_id}/devices", "GUARD\nDOOR", "{\n\"data\": [\n{\n\"type\": \"GUARD\",\n\"alias\": \"string\"\n}\n]\n}"),
			"documented as",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Extract([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestExtractSnippet(t *testing.T) {
	in := snippet("/device/v1/locations/{location_id}/devices", "GUARD\nDOOR",
		"{\n\"data\": [\n{\n\"type\": \"GUARD\",\n\"alias\": \"string\"\n}\n],\n\"uri\": \"x\"\n}")
	v, err := Extract([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Values("device.type"); !slices.Equal(got, []string{"GUARD", "DOOR"}) {
		t.Errorf("device.type %q (the data[] wrapper must be dropped)", got)
	}
}

func TestGluedRunsSpellTheirLine(t *testing.T) {
	for run, pieces := range gluedRuns() {
		if strings.Join(pieces, "") != run {
			t.Errorf("%q split as %q", run, pieces)
		}
	}
}

func FuzzExtract(f *testing.F) {
	f.Add(reference(f))
	f.Add([]byte(snippet("/device/v1/devices/{device_id}", "GUARD\nLOCKER", "{\n\"type\": \"GUARD\"\n}")))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Extract(b)
		if err != nil {
			return
		}
		if _, err := Parse(v.Format()); err != nil {
			t.Fatalf("an extracted vocabulary does not parse back: %v", err)
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(Header + "device.type \"GUARD\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Parse(b)
		if err != nil {
			return
		}
		again, err := Parse(v.Format())
		if err != nil || !slices.Equal(again.Fields(), v.Fields()) {
			t.Fatalf("Format does not parse back: %v", err)
		}
	})
}

func TestExample(t *testing.T) {
	ref := reference(t)
	dev, err := Example(ref, "/device/v1/devices/{device_id}", false)
	if err != nil {
		t.Fatal(err)
	}
	if dev["type"] != "GUARD" || dev["price_list"] == nil || dev["user"] == nil || len(dev) != 29 {
		t.Errorf("device example: %d keys, %v", len(dev), dev)
	}
	list, err := Example(ref, "/device/v1/locations/{location_id}/devices", false)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := list["data"].([]any)
	if len(data) != 1 || len(data[0].(map[string]any)) != len(dev) || list["uri"] == nil {
		t.Errorf("list example %v", list)
	}
	req, err := Example(ref, "/device/v1/devices/{device_id}/commands", true)
	if err != nil {
		t.Fatal(err)
	}
	if req["command"] != "lock" || req["power_cycle"] != true {
		t.Errorf("request example %v", req)
	}
	cmd, err := Example(ref, "/device/v1/devices/{device_id}/commands", false)
	if err != nil {
		t.Fatal(err)
	}
	if cmd["state"].(map[string]any)["value"] != "NOT_SENT" {
		t.Errorf("command example %v", cmd)
	}
	if _, err := Example(ref, "/device/v1/nothing", false); err == nil {
		t.Error("an endpoint the reference lacks has an example")
	}
}
