package health

import "github.com/fleetd/fleetd/internal/record"

// CanSync reports whether a sync-device command can reach d: its commands
// map offers sync-device, and it is not asleep out of reach (DEEP_SLEEP with
// LOCAL_WAKEUP power saving can only be woken on site).
func CanSync(d *record.Device) bool {
	if !d.Supports(record.CmdSyncDevice) {
		return false
	}
	return !(d.SleepState == record.SleepDeep && d.PowerSave == record.PowerLocalWakeup)
}
