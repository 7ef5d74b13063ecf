package record

// Enum fields are one-byte codes. Code 0 is the absent value (null, "" or a
// missing field); Other marks a value the API reference does not document,
// whose text is kept in Device.Undocumented. The spellings are the API
// reference's; Parse* map them without allocating.

// Health is heartbeat_v2.health.
type Health uint8

// Health codes.
const (
	HealthNone Health = iota
	HealthHealthy
	HealthUnhealthy
	HealthDead
	HealthLongDead
	HealthOther
)

// ParseHealth returns the code of a heartbeat_v2.health value.
func ParseHealth[B ~string | ~[]byte](b B) Health {
	switch string(b) {
	case "":
		return HealthNone
	case "HEALTHY":
		return HealthHealthy
	case "UNHEALTHY":
		return HealthUnhealthy
	case "DEAD":
		return HealthDead
	case "LONG_DEAD":
		return HealthLongDead
	}
	return HealthOther
}

// String is the API spelling; "" for none and for Other.
func (h Health) String() string {
	switch h {
	case HealthHealthy:
		return "HEALTHY"
	case HealthUnhealthy:
		return "UNHEALTHY"
	case HealthDead:
		return "DEAD"
	case HealthLongDead:
		return "LONG_DEAD"
	}
	return ""
}

// HardwareState is hardware_state.
type HardwareState uint8

// HardwareState codes.
const (
	HardwareNone HardwareState = iota
	HardwareNormal
	HardwareDisabled
	HardwareDisabledLocking
	HardwareDisabledUnlocking
	HardwareError
	HardwareNotResponding
	HardwareOther
)

// ParseHardwareState returns the code of a hardware_state value.
func ParseHardwareState[B ~string | ~[]byte](b B) HardwareState {
	switch string(b) {
	case "":
		return HardwareNone
	case "NORMAL":
		return HardwareNormal
	case "DISABLED":
		return HardwareDisabled
	case "DISABLED_LOCKING":
		return HardwareDisabledLocking
	case "DISABLED_UNLOCKING":
		return HardwareDisabledUnlocking
	case "ERROR":
		return HardwareError
	case "NOT_RESPONDING":
		return HardwareNotResponding
	}
	return HardwareOther
}

// String is the API spelling; "" for none and for Other.
func (s HardwareState) String() string {
	switch s {
	case HardwareNormal:
		return "NORMAL"
	case HardwareDisabled:
		return "DISABLED"
	case HardwareDisabledLocking:
		return "DISABLED_LOCKING"
	case HardwareDisabledUnlocking:
		return "DISABLED_UNLOCKING"
	case HardwareError:
		return "ERROR"
	case HardwareNotResponding:
		return "NOT_RESPONDING"
	}
	return ""
}

// DeviceType is the device's type.
type DeviceType uint8

// DeviceType codes.
const (
	TypeNone DeviceType = iota
	TypeGuard
	TypeBikeDock
	TypeScooterDock
	TypeLocker
	TypeBikeHouseDoor
	TypeBikeRent
	TypeScooterRent
	TypeDock
	TypeDockSessionless
	TypeDoor
	TypeOther
)

// ParseDeviceType returns the code of a type value.
func ParseDeviceType[B ~string | ~[]byte](b B) DeviceType {
	switch string(b) {
	case "":
		return TypeNone
	case "GUARD":
		return TypeGuard
	case "BIKE_DOCK":
		return TypeBikeDock
	case "SCOOTER_DOCK":
		return TypeScooterDock
	case "LOCKER":
		return TypeLocker
	case "BIKE_HOUSE_DOOR":
		return TypeBikeHouseDoor
	case "BIKE_RENT":
		return TypeBikeRent
	case "SCOOTER_RENT":
		return TypeScooterRent
	case "DOCK":
		return TypeDock
	case "DOCK_SESSIONLESS":
		return TypeDockSessionless
	case "DOOR":
		return TypeDoor
	}
	return TypeOther
}

// String is the API spelling; "" for none and for Other.
func (t DeviceType) String() string {
	switch t {
	case TypeGuard:
		return "GUARD"
	case TypeBikeDock:
		return "BIKE_DOCK"
	case TypeScooterDock:
		return "SCOOTER_DOCK"
	case TypeLocker:
		return "LOCKER"
	case TypeBikeHouseDoor:
		return "BIKE_HOUSE_DOOR"
	case TypeBikeRent:
		return "BIKE_RENT"
	case TypeScooterRent:
		return "SCOOTER_RENT"
	case TypeDock:
		return "DOCK"
	case TypeDockSessionless:
		return "DOCK_SESSIONLESS"
	case TypeDoor:
		return "DOOR"
	}
	return ""
}

// StateValue is state.value.
type StateValue uint8

// StateValue codes.
const (
	StateNone StateValue = iota
	StateAllocated
	StateLocked
	StateLocking
	StateUnlocked
	StateUnlocking
	StateBooked
	StateOther
)

// ParseStateValue returns the code of a state.value value.
func ParseStateValue[B ~string | ~[]byte](b B) StateValue {
	switch string(b) {
	case "":
		return StateNone
	case "ALLOCATED":
		return StateAllocated
	case "LOCKED":
		return StateLocked
	case "LOCKING":
		return StateLocking
	case "UNLOCKED":
		return StateUnlocked
	case "UNLOCKING":
		return StateUnlocking
	case "BOOKED":
		return StateBooked
	}
	return StateOther
}

// String is the API spelling; "" for none and for Other.
func (v StateValue) String() string {
	switch v {
	case StateAllocated:
		return "ALLOCATED"
	case StateLocked:
		return "LOCKED"
	case StateLocking:
		return "LOCKING"
	case StateUnlocked:
		return "UNLOCKED"
	case StateUnlocking:
		return "UNLOCKING"
	case StateBooked:
		return "BOOKED"
	}
	return ""
}

// LockState is lock_state.
type LockState uint8

// LockState codes.
const (
	LockNone LockState = iota
	LockLocked
	LockUnlocked
	LockOther
)

// ParseLockState returns the code of a lock_state value.
func ParseLockState[B ~string | ~[]byte](b B) LockState {
	switch string(b) {
	case "":
		return LockNone
	case "LOCKED":
		return LockLocked
	case "UNLOCKED":
		return LockUnlocked
	}
	return LockOther
}

// String is the API spelling; "" for none and for Other.
func (l LockState) String() string {
	switch l {
	case LockLocked:
		return "LOCKED"
	case LockUnlocked:
		return "UNLOCKED"
	}
	return ""
}

// SleepState is sleep_state; SleepAwake ("") is a documented value.
type SleepState uint8

// SleepState codes.
const (
	SleepAwake SleepState = iota
	SleepLight
	SleepDeep
	SleepOther
)

// ParseSleepState returns the code of a sleep_state value.
func ParseSleepState[B ~string | ~[]byte](b B) SleepState {
	switch string(b) {
	case "":
		return SleepAwake
	case "LIGHT_SLEEP":
		return SleepLight
	case "DEEP_SLEEP":
		return SleepDeep
	}
	return SleepOther
}

// String is the API spelling; "" for awake and for Other.
func (s SleepState) String() string {
	switch s {
	case SleepLight:
		return "LIGHT_SLEEP"
	case SleepDeep:
		return "DEEP_SLEEP"
	}
	return ""
}

// PowerSaveStrategy is power_save_strategy.
type PowerSaveStrategy uint8

// PowerSaveStrategy codes.
const (
	PowerNone PowerSaveStrategy = iota
	PowerNoSaving
	PowerRemoteWakeup
	PowerLocalWakeup
	PowerOther
)

// ParsePowerSaveStrategy returns the code of a power_save_strategy value.
func ParsePowerSaveStrategy[B ~string | ~[]byte](b B) PowerSaveStrategy {
	switch string(b) {
	case "":
		return PowerNone
	case "NONE":
		return PowerNoSaving
	case "REMOTE_WAKEUP":
		return PowerRemoteWakeup
	case "LOCAL_WAKEUP":
		return PowerLocalWakeup
	}
	return PowerOther
}

// String is the API spelling; "" for absent and for Other.
func (p PowerSaveStrategy) String() string {
	switch p {
	case PowerNoSaving:
		return "NONE"
	case PowerRemoteWakeup:
		return "REMOTE_WAKEUP"
	case PowerLocalWakeup:
		return "LOCAL_WAKEUP"
	}
	return ""
}

// Command names the API documents.
const (
	CmdLock               = "lock"
	CmdUnlock             = "unlock"
	CmdBook               = "book"
	CmdCancelBooking      = "cancel-booking"
	CmdForceLock          = "force-lock"
	CmdForceUnlock        = "force-unlock"
	CmdForceCancelBooking = "force-cancel-booking"
	CmdSyncDevice         = "sync-device"
	CmdTakePhoto          = "take-photo"
)

// Commands is a set of documented command names: one bit each. fleetd only
// ever sends documented commands, so undocumented names are not kept.
type Commands uint16

func commandBit[B ~string | ~[]byte](name B) Commands {
	switch string(name) {
	case CmdLock:
		return 1 << 0
	case CmdUnlock:
		return 1 << 1
	case CmdBook:
		return 1 << 2
	case CmdCancelBooking:
		return 1 << 3
	case CmdForceLock:
		return 1 << 4
	case CmdForceUnlock:
		return 1 << 5
	case CmdForceCancelBooking:
		return 1 << 6
	case CmdSyncDevice:
		return 1 << 7
	case CmdTakePhoto:
		return 1 << 8
	}
	return 0
}

// AddCommand returns c with name added; undocumented names leave c as is.
func AddCommand[B ~string | ~[]byte](c Commands, name B) Commands { return c | commandBit(name) }

// Has reports whether c holds the documented command name.
func (c Commands) Has(name string) bool {
	b := commandBit(name)
	return b != 0 && c&b != 0
}

// Names lists the set's names in the API reference's order.
func (c Commands) Names() []string {
	var out []string
	for _, n := range []string{CmdLock, CmdUnlock, CmdBook, CmdCancelBooking, CmdForceLock,
		CmdForceUnlock, CmdForceCancelBooking, CmdSyncDevice, CmdTakePhoto} {
		if c.Has(n) {
			out = append(out, n)
		}
	}
	return out
}
