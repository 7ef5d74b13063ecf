package sim

// The simulator's own words for the vendors' enums and commands. They are
// spelt here from the reference texts (docs/vendor/), never taken from the
// clients' packages: were they shared, a misspelt constant would be served by
// the simulator exactly as the client expects it and no test could notice.
//
// Every const block tagged "vocab: <field>" is checked, value by value,
// against the vocabulary extracted from docs/vendor/bikeep-parking-device-api.txt
// (testdata/vocabulary.txt); see vocabulary_test.go. Blocks without the tag
// name values the reference text does not enumerate (location types, COPRI
// states) and say where they come from.

// deviceType is a device's type.
type deviceType string

// vocab: device.type
const (
	typeGuard           deviceType = "GUARD"
	typeBikeDock        deviceType = "BIKE_DOCK"
	typeScooterDock     deviceType = "SCOOTER_DOCK"
	typeLocker          deviceType = "LOCKER"
	typeBikeHouseDoor   deviceType = "BIKE_HOUSE_DOOR"
	typeBikeRent        deviceType = "BIKE_RENT"
	typeScooterRent     deviceType = "SCOOTER_RENT"
	typeDock            deviceType = "DOCK"
	typeDockSessionless deviceType = "DOCK_SESSIONLESS"
	typeDoor            deviceType = "DOOR"
)

// stateValue is a device's logical state.value.
type stateValue string

// vocab: device.state.value
const (
	stateAllocated stateValue = "ALLOCATED"
	stateLocked    stateValue = "LOCKED"
	stateLocking   stateValue = "LOCKING"
	stateUnlocked  stateValue = "UNLOCKED"
	stateUnlocking stateValue = "UNLOCKING"
	stateBooked    stateValue = "BOOKED"
)

// lockState is a device's physical lock_state.
type lockState string

// vocab: device.lock_state
const (
	lockLocked   lockState = "LOCKED"
	lockUnlocked lockState = "UNLOCKED"
)

// health is heartbeat_v2.health.
type health string

// vocab: device.heartbeat_v2.health
const (
	healthHealthy   health = "HEALTHY"
	healthUnhealthy health = "UNHEALTHY"
	healthDead      health = "DEAD"
	healthLongDead  health = "LONG_DEAD"
)

// vocab: device.heartbeat_health
const (
	// deprecatedHealthDead is what the deprecated heartbeat_health shows for
	// DEAD and LONG_DEAD alike; HEALTHY and UNHEALTHY are shown as they are.
	deprecatedHealthDead = "DEAD"
)

// hardwareState is a device's hardware_state.
type hardwareState string

// vocab: device.hardware_state
const (
	hwNormal            hardwareState = "NORMAL"
	hwDisabled          hardwareState = "DISABLED"
	hwDisabledLocking   hardwareState = "DISABLED_LOCKING"
	hwDisabledUnlocking hardwareState = "DISABLED_UNLOCKING"
	hwError             hardwareState = "ERROR"
	hwNotResponding     hardwareState = "NOT_RESPONDING"
)

// sleepState is a device's sleep_state; "" means awake.
type sleepState string

// vocab: device.sleep_state
const (
	sleepAwake sleepState = ""
	sleepLight sleepState = "LIGHT_SLEEP"
	sleepDeep  sleepState = "DEEP_SLEEP"
)

// powerSave is a device's power_save_strategy.
type powerSave string

// vocab: device.power_save_strategy
const (
	powerNone         powerSave = "NONE"
	powerRemoteWakeup powerSave = "REMOTE_WAKEUP"
	powerLocalWakeup  powerSave = "LOCAL_WAKEUP"
)

// commandState is a command's state.value.
type commandState string

// vocab: command.state.value
const (
	cmdStateNotSent  commandState = "NOT_SENT"
	cmdStateSent     commandState = "SENT"
	cmdStateReceived commandState = "RECEIVED"
	cmdStateSuccess  commandState = "SUCCESS"
	cmdStateError    commandState = "ERROR"
)

// terminal reports whether a command has finished.
func (c commandState) terminal() bool { return c == cmdStateSuccess || c == cmdStateError }

// Command names: keys of a device's commands map, the "command" of a POST
// and the "name" of a command.
//
// vocab: command_request.command
const (
	cmdLock               = "lock"
	cmdUnlock             = "unlock"
	cmdBook               = "book"
	cmdCancelBooking      = "cancel-booking"
	cmdForceLock          = "force-lock"
	cmdForceUnlock        = "force-unlock"
	cmdForceCancelBooking = "force-cancel-booking"
	cmdSyncDevice         = "sync-device"
	cmdTakePhoto          = "take-photo"
)

// force-unlock reasons whose command also needs a comment.
//
// vocab: command_request.reason
const (
	reasonStuckUserOther = "STUCK_USER_OTHER_ISSUE"
	reasonOther          = "OTHER"
)

// Deliberately undocumented values, served by the unknown_state fault so that
// fleetd's handling of a value it does not know is exercised. The vocabulary
// test checks that they are NOT in the reference.
const (
	unknownHardwareState hardwareState = "QUANTUM_FLUX"
	unknownHealth        health        = "ZOMBIE"
)

// locationType is a location's type. The Location API is not part of the
// Parking Device reference text; these are the types api/NOTES.md lists.
type locationType string

const (
	locBikeLockers       locationType = "BIKE_LOCKERS"
	locBikeDocks         locationType = "BIKE_DOCKS"
	locScooterDocks      locationType = "SCOOTER_DOCKS"
	locScooterDocksV2    locationType = "SCOOTER_DOCKS_V2"
	locBikeHouse         locationType = "BIKE_HOUSE"
	locBikeHouseDockless locationType = "BIKE_HOUSE_DOCKLESS"
	locBikeHangar        locationType = "BIKE_HANGAR"
)

// COPRI booking states. canceled, occupied and available are the states of
// the booking_update reference (docs/vendor/copri-booking-update.txt);
// defect is a bikes_all state api/NOTES.md names.
type bookingState string

const (
	copriOccupied  bookingState = "occupied"
	copriAvailable bookingState = "available"
	copriDefect    bookingState = "defect"
)

// copriLock is a COPRI lock_state (booking_update reference: locked,
// locking, unlocked).
type copriLock string

const (
	copriLocked   copriLock = "locked"
	copriUnlocked copriLock = "unlocked"
)

// serviceState is a bikes_all service_state (api/NOTES.md).
type serviceState string

const (
	serviceOK     serviceState = "0"
	serviceDefect serviceState = "1"
	serviceTodo   serviceState = "2"
	serviceCheck  serviceState = "3"
)
