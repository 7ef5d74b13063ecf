package bikeep

import (
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/fleetd/fleetd/internal/clients/limits"
	"github.com/fleetd/fleetd/internal/fleet"
)

// Compact returns the fleet record of d with the checks and caps of the
// device walk: the id must pass limits.ID (it is never rewritten), display
// strings, tags and undocumented enum values are capped with limits.Name,
// and only documented command names are kept. It is the reference the
// streaming ListDecoder is tested against.
func (d *Device) Compact() (fleet.Device, error) {
	if err := limits.ID(d.ID); err != nil {
		return fleet.Device{}, fmt.Errorf("id: %w", err)
	}
	name := func(s string) string { s, _ = limits.Name(s); return s }
	c := fleet.Device{
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
		c.Commands = fleet.AddCommand(c.Commands, n)
	}
	var u fleet.Undocumented
	c.Type = fleet.ParseDeviceType(string(d.Type))
	if c.Type == fleet.TypeOther {
		u.Type = name(string(d.Type))
	}
	c.SleepState = fleet.ParseSleepState(string(d.SleepState))
	if c.SleepState == fleet.SleepOther {
		u.SleepState = name(string(d.SleepState))
	}
	c.LockState = fleet.ParseLockState(string(d.LockState))
	if c.LockState == fleet.LockOther {
		u.LockState = name(string(d.LockState))
	}
	c.HardwareState = fleet.ParseHardwareState(string(d.HardwareState))
	if c.HardwareState == fleet.HardwareOther {
		u.HardwareState = name(string(d.HardwareState))
	}
	c.PowerSave = fleet.ParsePowerSaveStrategy(string(d.PowerSaveStrategy))
	if c.PowerSave == fleet.PowerOther {
		u.PowerSave = name(string(d.PowerSaveStrategy))
	}
	if st := d.State; st != nil {
		c.State = fleet.ParseStateValue(string(st.Value))
		if c.State == fleet.StateOther {
			u.State = name(string(st.Value))
		}
		c.StateChangedAt = fleet.FromTime(st.ChangedAt.Time)
		c.StateTimeoutAt = fleet.FromTime(st.TimeoutAt.Time)
	}
	if hb := d.HeartbeatV2; hb != nil {
		c.Health = fleet.ParseHealth(string(hb.Health))
		if c.Health == fleet.HealthOther {
			u.Health = name(string(hb.Health))
		}
		c.DeadSince = fleet.FromTime(hb.DeadSince.Time)
	}
	if u != (fleet.Undocumented{}) {
		c.SetUndocumented(&u)
	}
	return c, nil
}

// decodeDeviceElement decodes one data[] element as a strict JSON document
// (RFC 7493: no duplicate member names, valid UTF-8; member names matched
// exactly) into a Device. These are the element rules of the device walk.
func decodeDeviceElement(raw []byte) (Device, error) {
	var d Device
	if string(raw) == "null" {
		return d, fmt.Errorf("null device")
	}
	err := jsonv2.Unmarshal(raw, &d)
	return d, err
}
