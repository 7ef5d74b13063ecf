package bikeep

import (
	"fmt"

	"github.com/fleetd/fleetd/internal/clients/limits"
	"github.com/fleetd/fleetd/internal/record"
)

// Compact returns the fleet record of d with the checks and caps of the
// device walk: the id must pass limits.ID (it is never rewritten), display
// strings, tags and undocumented enum values are capped with limits.Name,
// and only documented command names are kept. It is the reference the
// streaming ListDecoder is tested against.
func (d *Device) Compact() (record.Device, error) {
	if err := limits.ID(d.ID); err != nil {
		return record.Device{}, fmt.Errorf("id: %w", err)
	}
	return d.Record(), nil
}

// Record is Compact without the id check: for records built by hand (tests,
// single-device answers whose id was checked on the way in).
func (d *Device) Record() record.Device {
	name := func(s string) string { s, _ = limits.Name(s); return s }
	c := record.Device{
		ID:         d.ID,
		Alias:      name(d.Alias),
		Code:       name(d.Code),
		HardwareID: name(d.HardwareID),
	}
	if d.Tags != nil {
		c.Tags = make([]string, len(d.Tags))
		for i, t := range d.Tags {
			c.Tags[i] = name(t)
		}
	}
	for n := range d.Commands {
		c.Commands = record.AddCommand(c.Commands, n)
	}
	var u record.Undocumented
	c.Type = record.ParseDeviceType(string(d.Type))
	if c.Type == record.TypeOther {
		u.Type = name(string(d.Type))
	}
	c.SleepState = record.ParseSleepState(string(d.SleepState))
	if c.SleepState == record.SleepOther {
		u.SleepState = name(string(d.SleepState))
	}
	c.LockState = record.ParseLockState(string(d.LockState))
	if c.LockState == record.LockOther {
		u.LockState = name(string(d.LockState))
	}
	c.HardwareState = record.ParseHardwareState(string(d.HardwareState))
	if c.HardwareState == record.HardwareOther {
		u.HardwareState = name(string(d.HardwareState))
	}
	c.PowerSave = record.ParsePowerSaveStrategy(string(d.PowerSaveStrategy))
	if c.PowerSave == record.PowerOther {
		u.PowerSave = name(string(d.PowerSaveStrategy))
	}
	if st := d.State; st != nil {
		c.HasState = true
		c.State = record.ParseStateValue(string(st.Value))
		if c.State == record.StateOther {
			u.State = name(string(st.Value))
		}
		c.StateChangedAt = record.FromTime(st.ChangedAt.Time)
		c.StateTimeoutAt = record.FromTime(st.TimeoutAt.Time)
	}
	if hb := d.HeartbeatV2; hb != nil {
		c.HasHeartbeat = true
		c.Health = record.ParseHealth(string(hb.Health))
		if c.Health == record.HealthOther {
			u.Health = name(string(hb.Health))
		}
		c.DeadSince = record.FromTime(hb.DeadSince.Time)
	}
	if u != (record.Undocumented{}) {
		c.SetUndocumented(&u)
	}
	return c
}

// Records returns the records of devs (Record of each).
func Records(devs ...Device) []record.Device {
	out := make([]record.Device, len(devs))
	for i := range devs {
		out[i] = devs[i].Record()
	}
	return out
}
