package bikeep

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"testing"
	"time"
)

const zeroUUID = "00000000-0000-0000-0000-000000000000"

var refTime = time.Date(2025, 1, 15, 12, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// referenceDevice is the device example of the reference text, every field.
func referenceDevice() Device {
	return Device{
		WifiRSSI:         ptr(0.0),
		Code:             "string",
		Nr:               "string",
		Heartbeat:        "string",
		SleepState:       SleepAwake,
		Type:             TypeGuard,
		HasOTPSupport:    true,
		PriceList:        &Ref{ID: zeroUUID, URI: "https://example.com/resource"},
		HeartbeatLatency: ptr(0.0),
		Alias:            "string",
		ID:               zeroUUID,
		State: &DeviceState{
			ChangedAt: Time{refTime},
			Value:     StateAllocated,
			TimeoutAt: Time{refTime},
		},
		HeartbeatV2: &HeartbeatV2{
			SentAt:        Time{refTime},
			LatencyMillis: ptr(0.0),
			Health:        HealthHealthy,
			DeadSince:     Time{refTime},
		},
		Commands:        map[string]string{"command_name": "string"},
		HasAccessLists:  true,
		HasSubscription: true,
		Settings: &Settings{
			UpdatedAt: Time{refTime},
			CreatedAt: Time{refTime},
			DeepLink:  "string",
		},
		LockState:         LockLocked,
		HeartbeatHealth:   HealthHealthy,
		URI:               "https://example.com/resource",
		PowerSaveStrategy: PowerNone,
		Tags:              []string{"string"},
		Comment:           "string",
		Location:          &Ref{ID: zeroUUID, URI: "https://example.com/resource"},
		User:              &User{AccessKey: "string", ID: zeroUUID},
		HasAllowlist:      true,
		HardwareID:        zeroUUID,
		HardwareState:     HardwareNormal,
		HasCamera:         true,
	}
}

func referenceCommand() Command {
	return Command{
		Name: "string",
		ID:   zeroUUID,
		State: CommandState{
			Reason:    "string",
			Value:     CommandNotSent,
			TimeoutAt: Time{refTime},
		},
		URI:    "https://example.com/resource",
		Device: Ref{ID: zeroUUID, URI: "https://example.com/resource"},
		Events: []Event{{Name: "string", Value: "string", Timestamp: Time{refTime}}},
	}
}

// assertAllSet fails for every exported field of v that is the zero value,
// except those named in allowZero: proof that the fixture and the expected
// value cover every field, including deprecated ones.
func assertAllSet(t *testing.T, v any, allowZero ...string) {
	t.Helper()
	rv := reflect.ValueOf(v)
	for i := range rv.NumField() {
		f := rv.Type().Field(i)
		if f.IsExported() && rv.Field(i).IsZero() && !contains(allowZero, f.Name) {
			t.Errorf("field %s is zero: not covered by the fixture", f.Name)
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestDecodeReferencePayloads(t *testing.T) {
	t.Run("device", func(t *testing.T) {
		c, _, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/device/v1/devices/"+zeroUUID {
				t.Errorf("path %q", r.URL.Path)
			}
			writeJSON(w, 200, string(fixture(t, "device.json")))
		})
		got, err := c.GetDevice(context.Background(), zeroUUID)
		if err != nil {
			t.Fatal(err)
		}
		want := referenceDevice()
		assertAllSet(t, want, "SleepState")
		assertAllSet(t, *got, "SleepState")
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("device:\n got %#v\nwant %#v", *got, want)
		}
		// Field by field for the ones a DeepEqual on pointers could mask.
		if *got.WifiRSSI != 0 || *got.HeartbeatLatency != 0 || *got.HeartbeatV2.LatencyMillis != 0 {
			t.Error("deprecated numeric fields not decoded as 0")
		}
		if got.User.AccessKey.Reveal() != "string" {
			t.Errorf("access key = %q", got.User.AccessKey.Reveal())
		}
		if got.Health() != HealthHealthy || got.StateValue() != StateAllocated || got.LocationID() != zeroUUID {
			t.Errorf("helpers: %q %q %q", got.Health(), got.StateValue(), got.LocationID())
		}
		if !got.Supports("command_name") || got.Supports(CmdSyncDevice) {
			t.Error("Supports does not follow the commands map")
		}
	})

	t.Run("device list", func(t *testing.T) {
		c, _, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/device/v1/locations/loc-1/devices" {
				t.Errorf("path %q", r.URL.Path)
			}
			writeJSON(w, 200, string(fixture(t, "device_list.json")))
		})
		got, err := c.ListLocationDevices(context.Background(), "loc-1")
		if err != nil {
			t.Fatal(err)
		}
		if want := []Device{referenceDevice()}; !reflect.DeepEqual(got, want) {
			t.Errorf("devices:\n got %#v\nwant %#v", got, want)
		}
	})

	t.Run("command", func(t *testing.T) {
		c, _, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/device/v1/commands/cmd-1" {
				t.Errorf("path %q", r.URL.Path)
			}
			writeJSON(w, 200, string(fixture(t, "command.json")))
		})
		got, err := c.GetCommand(context.Background(), "cmd-1")
		if err != nil {
			t.Fatal(err)
		}
		want := referenceCommand()
		assertAllSet(t, want)
		assertAllSet(t, got.State)
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("command:\n got %#v\nwant %#v", *got, want)
		}
		if got.State.Value.Terminal() || !got.State.Value.Known() {
			t.Errorf("NOT_SENT: terminal=%v known=%v", got.State.Value.Terminal(), got.State.Value.Known())
		}
	})

	t.Run("send command", func(t *testing.T) {
		c, _, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost || r.URL.Path != "/device/v1/devices/dev-1/commands" {
				t.Errorf("%s %s", r.Method, r.URL.Path)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			if auth := r.Header.Get("Authorization"); auth != "Bearer "+testStaticToken {
				t.Errorf("authorization %q", auth)
			}
			b, _ := io.ReadAll(r.Body)
			var got, want map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Error(err)
			}
			_ = json.Unmarshal(fixture(t, "command_request.json"), &want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("request body:\n got %v\nwant %v", got, want)
			}
			writeJSON(w, 200, string(fixture(t, "command.json")))
		})
		tm := refTime
		got, err := c.SendCommand(context.Background(), "dev-1", CommandRequest{
			Command:    CmdLock,
			Reason:     "STUCK_USER_RFID_ISSUE",
			UserID:     zeroUUID,
			PowerCycle: true,
			Comment:    "string",
			TimeoutAt:  &tm,
		})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*got, referenceCommand()) {
			t.Errorf("command: %#v", *got)
		}
	})

	t.Run("error envelope", func(t *testing.T) {
		c, _, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 403, string(fixture(t, "error.json")))
		})
		_, err := c.GetDevice(context.Background(), "dev-1")
		var ae *APIError
		if !errors.As(err, &ae) {
			t.Fatalf("want *APIError, got %T %v", err, err)
		}
		want := APIError{StatusCode: 403, ErrorCode: "string", Message: "string", CorrelationID: zeroUUID,
			Method: "GET", Route: RouteDevice}
		if *ae != want {
			t.Errorf("got %#v\nwant %#v", *ae, want)
		}
		const wantMsg = "bikeep: GET /device/v1/devices/{id}: HTTP 403 string (correlation_id " + zeroUUID + ")"
		if err.Error() != wantMsg {
			t.Errorf("Error() = %q\nwant      %q", err.Error(), wantMsg)
		}
		var eb ErrorBody
		if err := json.Unmarshal(fixture(t, "error.json"), &eb); err != nil {
			t.Fatal(err)
		}
		if eb != (ErrorBody{ErrorMessage: "string", StatusCode: 0, CorrelationID: zeroUUID, ErrorCode: "string"}) {
			t.Errorf("ErrorBody %#v", eb)
		}
	})

	t.Run("locations", func(t *testing.T) {
		c, _, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/location/v1/locations" {
				t.Errorf("path %q", r.URL.Path)
			}
			writeJSON(w, 200, string(fixture(t, "locations.json")))
		})
		got, err := c.ListLocations(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		want := []Location{{
			ID: "11111111-1111-1111-1111-111111111111", Type: LocationBikeLockers, Name: "Central Station",
			Status: "LAUNCHED", Connection: "online", Devices: DeviceCounts{Total: 24, Available: 17, Online: 23},
		}}
		assertAllSet(t, got[0])
		assertAllSet(t, got[0].Devices)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %#v\nwant %#v", got, want)
		}
	})
}
