package bikeep

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/fleetd/fleetd/internal/clients/limits"
	"github.com/fleetd/fleetd/internal/record"
	"github.com/fleetd/fleetd/internal/secret"
)

// Health is heartbeat_v2.health. It is an open enum: values this version does
// not know decode as they are and report Known() == false.
type Health string

// Documented Health values.
const (
	HealthHealthy   Health = "HEALTHY"
	HealthUnhealthy Health = "UNHEALTHY"
	HealthDead      Health = "DEAD"
	HealthLongDead  Health = "LONG_DEAD"
)

// Known reports whether h is a documented value.
func (h Health) Known() bool {
	switch h {
	case HealthHealthy, HealthUnhealthy, HealthDead, HealthLongDead:
		return true
	}
	return false
}

// HardwareState is the device's hardware_state (open enum).
type HardwareState string

// Documented HardwareState values.
const (
	HardwareNormal            HardwareState = "NORMAL"
	HardwareDisabled          HardwareState = "DISABLED"
	HardwareDisabledLocking   HardwareState = "DISABLED_LOCKING"
	HardwareDisabledUnlocking HardwareState = "DISABLED_UNLOCKING"
	HardwareError             HardwareState = "ERROR"
	HardwareNotResponding     HardwareState = "NOT_RESPONDING"
)

// Known reports whether s is a documented value.
func (s HardwareState) Known() bool {
	switch s {
	case HardwareNormal, HardwareDisabled, HardwareDisabledLocking, HardwareDisabledUnlocking,
		HardwareError, HardwareNotResponding:
		return true
	}
	return false
}

// DeviceType is the device's type (open enum).
type DeviceType string

// Documented DeviceType values.
const (
	TypeGuard           DeviceType = "GUARD"
	TypeBikeDock        DeviceType = "BIKE_DOCK"
	TypeScooterDock     DeviceType = "SCOOTER_DOCK"
	TypeLocker          DeviceType = "LOCKER"
	TypeBikeHouseDoor   DeviceType = "BIKE_HOUSE_DOOR"
	TypeBikeRent        DeviceType = "BIKE_RENT"
	TypeScooterRent     DeviceType = "SCOOTER_RENT"
	TypeDock            DeviceType = "DOCK"
	TypeDockSessionless DeviceType = "DOCK_SESSIONLESS"
	TypeDoor            DeviceType = "DOOR"
)

// Known reports whether t is a documented value.
func (t DeviceType) Known() bool {
	switch t {
	case TypeGuard, TypeBikeDock, TypeScooterDock, TypeLocker, TypeBikeHouseDoor, TypeBikeRent,
		TypeScooterRent, TypeDock, TypeDockSessionless, TypeDoor:
		return true
	}
	return false
}

// StateValue is the logical state.value of a device (open enum).
type StateValue string

// Documented StateValue values.
const (
	StateAllocated StateValue = "ALLOCATED"
	StateLocked    StateValue = "LOCKED"
	StateLocking   StateValue = "LOCKING"
	StateUnlocked  StateValue = "UNLOCKED"
	StateUnlocking StateValue = "UNLOCKING"
	StateBooked    StateValue = "BOOKED"
)

// Known reports whether v is a documented value.
func (v StateValue) Known() bool {
	switch v {
	case StateAllocated, StateLocked, StateLocking, StateUnlocked, StateUnlocking, StateBooked:
		return true
	}
	return false
}

// LockState is the physical lock_state of a device (open enum).
type LockState string

// Documented LockState values.
const (
	LockLocked   LockState = "LOCKED"
	LockUnlocked LockState = "UNLOCKED"
)

// Known reports whether l is a documented value.
func (l LockState) Known() bool { return l == LockLocked || l == LockUnlocked }

// SleepState is the device's sleep_state; "" means awake (open enum).
type SleepState string

// Documented SleepState values.
const (
	SleepAwake SleepState = ""
	SleepLight SleepState = "LIGHT_SLEEP"
	SleepDeep  SleepState = "DEEP_SLEEP"
)

// Known reports whether s is a documented value.
func (s SleepState) Known() bool { return s == SleepAwake || s == SleepLight || s == SleepDeep }

// PowerSaveStrategy is the device's power_save_strategy (open enum).
type PowerSaveStrategy string

// Documented PowerSaveStrategy values.
const (
	PowerNone         PowerSaveStrategy = "NONE"
	PowerRemoteWakeup PowerSaveStrategy = "REMOTE_WAKEUP"
	PowerLocalWakeup  PowerSaveStrategy = "LOCAL_WAKEUP"
)

// Known reports whether p is a documented value.
func (p PowerSaveStrategy) Known() bool {
	return p == PowerNone || p == PowerRemoteWakeup || p == PowerLocalWakeup
}

// CommandStateValue is a command's state.value (open enum).
// Lifecycle: NOT_SENT → SENT → RECEIVED → SUCCESS | ERROR.
type CommandStateValue string

// Documented CommandStateValue values.
const (
	CommandNotSent  CommandStateValue = "NOT_SENT"
	CommandSent     CommandStateValue = "SENT"
	CommandReceived CommandStateValue = "RECEIVED"
	CommandSuccess  CommandStateValue = "SUCCESS"
	CommandError    CommandStateValue = "ERROR"
)

// Known reports whether v is a documented value.
func (v CommandStateValue) Known() bool {
	switch v {
	case CommandNotSent, CommandSent, CommandReceived, CommandSuccess, CommandError:
		return true
	}
	return false
}

// Terminal reports whether the command has finished (SUCCESS or ERROR).
func (v CommandStateValue) Terminal() bool { return v == CommandSuccess || v == CommandError }

// LocationType is a location's type (open enum).
type LocationType string

// Documented LocationType values.
const (
	LocationBikeLockers       LocationType = "BIKE_LOCKERS"
	LocationBikeDocks         LocationType = "BIKE_DOCKS"
	LocationScooterDocks      LocationType = "SCOOTER_DOCKS"
	LocationScooterDocksV2    LocationType = "SCOOTER_DOCKS_V2"
	LocationBikeHouse         LocationType = "BIKE_HOUSE"
	LocationBikeHouseDockless LocationType = "BIKE_HOUSE_DOCKLESS"
	LocationBikeHangar        LocationType = "BIKE_HANGAR"
)

// Known reports whether t is a documented value.
func (t LocationType) Known() bool {
	switch t {
	case LocationBikeLockers, LocationBikeDocks, LocationScooterDocks, LocationScooterDocksV2,
		LocationBikeHouse, LocationBikeHouseDockless, LocationBikeHangar:
		return true
	}
	return false
}

// Command names the API documents for POST /device/v1/devices/{id}/commands.
// The compact record keeps them as a bit set and holds the one list.
const (
	CmdLock               = record.CmdLock
	CmdUnlock             = record.CmdUnlock
	CmdBook               = record.CmdBook
	CmdCancelBooking      = record.CmdCancelBooking
	CmdForceLock          = record.CmdForceLock
	CmdForceUnlock        = record.CmdForceUnlock
	CmdForceCancelBooking = record.CmdForceCancelBooking
	CmdSyncDevice         = record.CmdSyncDevice
	CmdTakePhoto          = record.CmdTakePhoto
)

// Time is a vendor timestamp. JSON null, a missing field and "" all decode to
// the zero Time (IsZero), because the API documents null as "no timeout" /
// "not dead" and real payloads use empty strings too.
type Time struct{ time.Time }

// UnmarshalJSON accepts null, "" and RFC 3339 (with or without fractional seconds).
func (t *Time) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		t.Time = time.Time{}
		return nil
	}
	var s string
	if n := len(b); n >= 2 && b[0] == '"' && b[n-1] == '"' && bytes.IndexByte(b[1:n-1], '\\') < 0 {
		// The common case, a plain quoted timestamp: no second JSON scan.
		s = string(b[1 : n-1])
	} else if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("timestamp: want a string, got %.40s", b)
	}
	if s == "" {
		t.Time = time.Time{}
		return nil
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		shown, _ := limits.Text(s, 64) // the value ends up in a log line
		return fmt.Errorf("timestamp %q: not RFC 3339", shown)
	}
	if !record.Representable(v) {
		// Before 1970 or after 2262: vendor garbage, and beyond what the
		// fleet's integer timestamps hold.
		shown, _ := limits.Text(s, 64)
		return fmt.Errorf("timestamp %q: %w", shown, errTimeRange)
	}
	t.Time = v
	return nil
}

// MarshalJSON writes null for the zero Time, RFC 3339 otherwise.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(t.UTC().Format(time.RFC3339Nano))
}

// Ref is a reference to another resource.
type Ref struct {
	ID  string `json:"id"`
	URI string `json:"uri"`
}

// DeviceState is a device's logical state.
type DeviceState struct {
	ChangedAt Time       `json:"changed_at"`
	Value     StateValue `json:"value"`
	// TimeoutAt bounds a transition; zero means the state does not time out.
	TimeoutAt Time `json:"timeout_at"`
}

// HeartbeatV2 is the device's health information. Only Health and DeadSince
// carry real data.
type HeartbeatV2 struct {
	// Deprecated: simulated value, not a real heartbeat timestamp.
	SentAt Time `json:"sent_at"`
	// Deprecated: always 0.
	LatencyMillis *float64 `json:"latency_millis"`
	Health        Health   `json:"health"`
	// DeadSince is zero unless the device is dead.
	DeadSince Time `json:"dead_since"`
}

// Settings needs additional permissions; usually absent.
type Settings struct {
	UpdatedAt Time   `json:"updated_at"`
	CreatedAt Time   `json:"created_at"`
	DeepLink  string `json:"deep_link"`
}

// User is the user occupying a device (needs additional permissions).
type User struct {
	// AccessKey opens the device for that user: treated as a secret.
	AccessKey secret.String `json:"access_key"`
	ID        string        `json:"id"`
}

// Device is a parking device as returned by GET /device/v1/devices/{id} and,
// inside data[], by GET /device/v1/locations/{id}/devices.
type Device struct {
	// Deprecated: always null.
	WifiRSSI *float64 `json:"wifi_rssi"`
	Code     string   `json:"code"`
	// Deprecated: use Alias.
	Nr string `json:"nr"`
	// Deprecated: simulated, not real heartbeat data.
	Heartbeat     string     `json:"heartbeat"`
	SleepState    SleepState `json:"sleep_state"`
	Type          DeviceType `json:"type"`
	HasOTPSupport bool       `json:"has_otp_support"`
	PriceList     *Ref       `json:"price_list"`
	// Deprecated: always null.
	HeartbeatLatency *float64 `json:"heartbeat_latency"`
	Alias            string   `json:"alias"`
	ID               string   `json:"id"`
	// State is nil when the API sends null.
	State *DeviceState `json:"state"`
	// HeartbeatV2 is nil when no health data is available.
	HeartbeatV2 *HeartbeatV2 `json:"heartbeat_v2"`
	// Commands maps command name → command URI; the authoritative list of
	// commands this device accepts.
	Commands        map[string]string `json:"commands"`
	HasAccessLists  bool              `json:"has_access_lists"`
	HasSubscription bool              `json:"has_subscription"`
	Settings        *Settings         `json:"settings"`
	LockState       LockState         `json:"lock_state"`
	// Deprecated: does not distinguish LONG_DEAD from DEAD; use HeartbeatV2.Health.
	HeartbeatHealth   Health            `json:"heartbeat_health"`
	URI               string            `json:"uri"`
	PowerSaveStrategy PowerSaveStrategy `json:"power_save_strategy"`
	Tags              []string          `json:"tags"`
	Comment           string            `json:"comment"`
	Location          *Ref              `json:"location"`
	User              *User             `json:"user"`
	HasAllowlist      bool              `json:"has_allowlist"`
	HardwareID        string            `json:"hardware_id"`
	HardwareState     HardwareState     `json:"hardware_state"`
	HasCamera         bool              `json:"has_camera"`
}

// Health returns heartbeat_v2.health, or "" when there is no health data.
func (d *Device) Health() Health {
	if d.HeartbeatV2 == nil {
		return ""
	}
	return d.HeartbeatV2.Health
}

// StateValue returns state.value, or "" when state is null.
func (d *Device) StateValue() StateValue {
	if d.State == nil {
		return ""
	}
	return d.State.Value
}

// LocationID returns location.id, or "" when absent.
func (d *Device) LocationID() string {
	if d.Location == nil {
		return ""
	}
	return d.Location.ID
}

// Supports reports whether the device's commands map offers name.
func (d *Device) Supports(name string) bool {
	_, ok := d.Commands[name]
	return ok
}

// CommandState is a command's state.
type CommandState struct {
	Reason    string            `json:"reason"`
	Value     CommandStateValue `json:"value"`
	TimeoutAt Time              `json:"timeout_at"`
}

// Event is one entry of a command's event log. Names start with REQUEST
// (server), RESPONSE (hardware reply) or STATE (device state changed).
type Event struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	Timestamp Time   `json:"timestamp"`
}

// Command is a command sent to a device.
type Command struct {
	Name   string       `json:"name"`
	ID     string       `json:"id"`
	State  CommandState `json:"state"`
	URI    string       `json:"uri"`
	Device Ref          `json:"device"`
	Events []Event      `json:"events"`
}

// CommandRequest is the body of POST /device/v1/devices/{id}/commands.
type CommandRequest struct {
	Command string `json:"command"`
	// Reason is required for force-unlock only.
	Reason string `json:"reason,omitempty"`
	// UserID is only used by lock.
	UserID string `json:"user_id,omitempty"`
	// PowerCycle is only used by sync-device.
	PowerCycle bool `json:"power_cycle,omitempty"`
	// Comment is only used with force-unlock.
	Comment string `json:"comment,omitempty"`
	// TimeoutAt is only used by book.
	TimeoutAt *time.Time `json:"timeout_at,omitempty"`
}

// DeviceCounts is the devices summary of a location.
type DeviceCounts struct {
	Total     int `json:"total"`
	Available int `json:"available"`
	Online    int `json:"online"`
}

// Location is an entry of GET /location/v1/locations.
type Location struct {
	ID         string       `json:"id"`
	Type       LocationType `json:"type"`
	Name       string       `json:"name"`
	Status     string       `json:"status"`
	Connection string       `json:"connection"`
	Devices    DeviceCounts `json:"devices"`
}

// ErrorBody is the documented error envelope.
type ErrorBody struct {
	ErrorMessage  string `json:"error_message"`
	StatusCode    int    `json:"status_code"`
	CorrelationID string `json:"correlation_id"`
	ErrorCode     string `json:"error_code"`
}
