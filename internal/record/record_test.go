package record

import (
	"slices"
	"testing"
	"time"
)

func TestEnumsRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parse func(string) string
		in    []string
	}{
		{"health", func(s string) string { return ParseHealth(s).String() }, []string{"", "HEALTHY", "UNHEALTHY", "DEAD", "LONG_DEAD"}},
		{"hardware_state", func(s string) string { return ParseHardwareState(s).String() },
			[]string{"", "NORMAL", "DISABLED", "DISABLED_LOCKING", "DISABLED_UNLOCKING", "ERROR", "NOT_RESPONDING"}},
		{"type", func(s string) string { return ParseDeviceType(s).String() },
			[]string{"", "GUARD", "BIKE_DOCK", "SCOOTER_DOCK", "LOCKER", "BIKE_HOUSE_DOOR", "BIKE_RENT", "SCOOTER_RENT", "DOCK", "DOCK_SESSIONLESS", "DOOR"}},
		{"state", func(s string) string { return ParseStateValue(s).String() },
			[]string{"", "ALLOCATED", "LOCKED", "LOCKING", "UNLOCKED", "UNLOCKING", "BOOKED"}},
		{"lock_state", func(s string) string { return ParseLockState(s).String() }, []string{"", "LOCKED", "UNLOCKED"}},
		{"sleep_state", func(s string) string { return ParseSleepState(s).String() }, []string{"", "LIGHT_SLEEP", "DEEP_SLEEP"}},
		{"power_save_strategy", func(s string) string { return ParsePowerSaveStrategy(s).String() },
			[]string{"", "NONE", "REMOTE_WAKEUP", "LOCAL_WAKEUP"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range tc.in {
				if got := tc.parse(v); got != v {
					t.Errorf("%q parses back as %q", v, got)
				}
			}
			if got := tc.parse("QUANTUM_FLUX"); got != "" {
				t.Errorf("an undocumented value parses to a documented one: %q", got)
			}
		})
	}
}

func TestUndocumentedValuesKeepTheirText(t *testing.T) {
	d := Device{Type: TypeOther, Health: HealthOther, HardwareState: HardwareNormal}
	d.SetUndocumented(&Undocumented{Type: "TELEPORTER", Health: "ZOMBIE"})
	if d.TypeName() != "TELEPORTER" || d.HealthName() != "ZOMBIE" || d.HardwareStateName() != "NORMAL" {
		t.Fatalf("names: %q %q %q", d.TypeName(), d.HealthName(), d.HardwareStateName())
	}
	o := d
	o.SetUndocumented(&Undocumented{Type: "TELEPORTER", Health: "ZOMBIE"})
	if !d.Equal(&o) {
		t.Fatal("equal undocumented values in different pointers must compare equal")
	}
	o.SetUndocumented(&Undocumented{Type: "TELEPORTER", Health: "GHOST"})
	if d.Equal(&o) {
		t.Fatal("different undocumented values compare equal")
	}
}

func TestEqualSeesEveryField(t *testing.T) {
	base := Device{ID: "d", Alias: "a", Code: "c", HardwareID: "h", Tags: []string{"x"}, StateChangedAt: 1,
		StateTimeoutAt: 2, DeadSince: 3, Commands: AddCommand(0, CmdSyncDevice), HasState: true, HasHeartbeat: true,
		Type: TypeLocker, Health: HealthHealthy, HardwareState: HardwareNormal, State: StateLocked,
		LockState: LockLocked, SleepState: SleepLight, PowerSave: PowerNoSaving}
	for _, change := range []func(*Device){
		func(d *Device) { d.ID = "e" }, func(d *Device) { d.Alias = "b" }, func(d *Device) { d.Code = "d" },
		func(d *Device) { d.HardwareID = "i" }, func(d *Device) { d.Tags = []string{"y"} },
		func(d *Device) { d.StateChangedAt = 9 }, func(d *Device) { d.StateTimeoutAt = 9 }, func(d *Device) { d.DeadSince = 9 },
		func(d *Device) { d.Commands = 0 }, func(d *Device) { d.HasState = false }, func(d *Device) { d.HasHeartbeat = false },
		func(d *Device) { d.Type = TypeDock }, func(d *Device) { d.Health = HealthDead }, func(d *Device) { d.HardwareState = HardwareError },
		func(d *Device) { d.State = StateUnlocked }, func(d *Device) { d.LockState = LockUnlocked },
		func(d *Device) { d.SleepState = SleepDeep }, func(d *Device) { d.PowerSave = PowerLocalWakeup },
		func(d *Device) { d.SetUndocumented(&Undocumented{Type: "X"}) },
	} {
		o := base
		o.Tags = slices.Clone(base.Tags)
		change(&o)
		if base.Equal(&o) {
			t.Errorf("a changed record compares equal: %+v", o)
		}
	}
}

func TestCommands(t *testing.T) {
	c := AddCommand(AddCommand(AddCommand(0, CmdSyncDevice), CmdLock), "frobnicate")
	if !c.Has(CmdSyncDevice) || !c.Has(CmdLock) || c.Has(CmdUnlock) || c.Has("frobnicate") {
		t.Fatalf("set %v", c.Names())
	}
	if got := c.Names(); !slices.Equal(got, []string{CmdLock, CmdSyncDevice}) {
		t.Fatalf("Names = %v", got)
	}
}

func TestTime(t *testing.T) {
	at := time.Date(2025, 1, 15, 12, 0, 0, 123, time.FixedZone("", 3600))
	for _, tc := range []struct {
		name string
		in   time.Time
		ok   bool
	}{
		{"zero is none", time.Time{}, true},
		{"an instant", at, true},
		{"the epoch itself", time.Unix(0, 0), false},
		{"before 1970", time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC), false},
		{"after 2262", time.Date(2263, 1, 1, 0, 0, 0, 0, time.UTC), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if Representable(tc.in) != tc.ok {
				t.Fatalf("Representable = %v", !tc.ok)
			}
			if tc.ok && !FromTime(tc.in).Time().Equal(tc.in) {
				t.Fatalf("%v does not round-trip: %v", tc.in, FromTime(tc.in).Time())
			}
		})
	}
	if !Time(0).IsZero() || !Time(0).Time().IsZero() {
		t.Fatal("0 is none")
	}
}
