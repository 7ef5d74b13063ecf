package health

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
)

var (
	t0     = time.Date(2025, 1, 15, 12, 0, 0, 0, time.UTC)
	params = Params{LockMismatchGrace: 2 * time.Minute, TransitionGrace: 5 * time.Minute, RentalMaxDuration: 24 * time.Hour}
)

func ts(t time.Time) bikeep.Time { return bikeep.Time{Time: t} }

// dev returns a healthy, awake LOCKER (state LOCKED, lock LOCKED) with the
// modifications applied.
func dev(id string, mods ...func(*bikeep.Device)) bikeep.Device {
	d := bikeep.Device{
		ID:                id,
		Alias:             "alias-" + id,
		Code:              "code-" + id,
		HardwareID:        "hw-" + id,
		Type:              bikeep.TypeLocker,
		State:             &bikeep.DeviceState{Value: bikeep.StateLocked, ChangedAt: ts(t0.Add(-time.Hour))},
		HeartbeatV2:       &bikeep.HeartbeatV2{Health: bikeep.HealthHealthy},
		LockState:         bikeep.LockLocked,
		HardwareState:     bikeep.HardwareNormal,
		PowerSaveStrategy: bikeep.PowerNone,
		Commands:          map[string]string{bikeep.CmdSyncDevice: "https://example.com/sync"},
	}
	for _, m := range mods {
		m(&d)
	}
	return d
}

func health(h bikeep.Health) func(*bikeep.Device) {
	return func(d *bikeep.Device) { d.HeartbeatV2.Health = h }
}

func deadSince(at time.Time) func(*bikeep.Device) {
	return func(d *bikeep.Device) { d.HeartbeatV2.DeadSince = ts(at) }
}

func hw(s bikeep.HardwareState) func(*bikeep.Device) {
	return func(d *bikeep.Device) { d.HardwareState = s }
}

func typ(t bikeep.DeviceType) func(*bikeep.Device) {
	return func(d *bikeep.Device) { d.Type = t }
}

// state sets state.value (changed_at stays an hour before t0).
func state(v bikeep.StateValue) func(*bikeep.Device) {
	return func(d *bikeep.Device) { d.State.Value = v }
}

func lock(l bikeep.LockState) func(*bikeep.Device) {
	return func(d *bikeep.Device) { d.LockState = l }
}

func changedAt(at time.Time) func(*bikeep.Device) {
	return func(d *bikeep.Device) { d.State.ChangedAt = ts(at) }
}

func timeoutAt(at time.Time) func(*bikeep.Device) {
	return func(d *bikeep.Device) { d.State.TimeoutAt = ts(at) }
}

func kinds(cs []Condition) []FaultKind {
	var out []FaultKind
	for _, c := range cs {
		out = append(out, c.Kind)
	}
	return out
}

func TestDeviceFaultKinds(t *testing.T) {
	want := []FaultKind{"unhealthy", "dead", "long_dead", "hardware_error", "not_responding",
		"stuck_transition", "lock_mismatch", "rental_lock_mismatch", "unknown_state"}
	got := DeviceFaultKinds()
	if !slices.Equal(got, want) {
		t.Fatalf("DeviceFaultKinds() = %v, want %v", got, want)
	}
	got[0] = "mutated"
	if DeviceFaultKinds()[0] != Unhealthy {
		t.Fatal("DeviceFaultKinds shares its slice between calls")
	}
	if got := RentalFaultKinds(); !slices.Equal(got, []RentalFaultKind{"lock_mismatch", "locking_stuck", "overdue"}) {
		t.Fatalf("RentalFaultKinds() = %v", got)
	}
}

func TestRecoverableKind(t *testing.T) {
	want := map[FaultKind]bool{
		Unhealthy: true, Dead: false, LongDead: false, HardwareError: true, NotResponding: true,
		StuckTransition: true, LockMismatch: true, RentalLockMismatch: true, UnknownState: false,
	}
	for _, k := range DeviceFaultKinds() {
		t.Run(string(k), func(t *testing.T) {
			if got := k.RecoverableKind(); got != want[k] {
				t.Errorf("%s.RecoverableKind() = %v, want %v", k, got, want[k])
			}
		})
	}
	if FaultKind("bogus").RecoverableKind() {
		t.Error("an unknown kind must not be recoverable")
	}
}

func TestClassifyDevice(t *testing.T) {
	dead := t0.Add(-3 * time.Hour)
	changed := t0.Add(-time.Hour)
	tests := []struct {
		name string
		d    bikeep.Device
		want []Condition
	}{
		{name: "healthy", d: dev("a")},
		{name: "heartbeat_v2 null: no health fault", d: dev("a", func(d *bikeep.Device) { d.HeartbeatV2 = nil })},
		{name: "heartbeat_v2.health empty", d: dev("a", health(""))},
		{
			name: "deprecated fields are ignored",
			d: dev("a", func(d *bikeep.Device) {
				d.HeartbeatHealth = bikeep.HealthDead
				d.Heartbeat = "DEAD"
				d.HeartbeatV2.SentAt = ts(t0.Add(-720 * time.Hour))
				lat := 99999.0
				d.HeartbeatV2.LatencyMillis = &lat
				d.HeartbeatLatency = &lat
				d.Nr = "GARBAGE"
			}),
		},
		{
			name: "deprecated heartbeat_health without heartbeat_v2",
			d:    dev("a", func(d *bikeep.Device) { d.HeartbeatV2 = nil; d.HeartbeatHealth = bikeep.HealthDead }),
		},
		{
			name: "unhealthy",
			d:    dev("a", health(bikeep.HealthUnhealthy)),
			want: []Condition{{Kind: Unhealthy, Detail: `health="UNHEALTHY"`}},
		},
		{
			name: "dead since dead_since",
			d:    dev("a", health(bikeep.HealthDead), deadSince(dead)),
			want: []Condition{{Kind: Dead, Onset: dead, Detail: `health="DEAD"`}},
		},
		{
			name: "dead without dead_since",
			d:    dev("a", health(bikeep.HealthDead)),
			want: []Condition{{Kind: Dead, Detail: `health="DEAD"`}},
		},
		{
			name: "long dead",
			d:    dev("a", health(bikeep.HealthLongDead), deadSince(dead)),
			want: []Condition{{Kind: LongDead, Onset: dead, Detail: `health="LONG_DEAD"`}},
		},
		{
			name: "hardware error",
			d:    dev("a", hw(bikeep.HardwareError)),
			want: []Condition{{Kind: HardwareError, Detail: `hardware_state="ERROR"`}},
		},
		{
			name: "not responding",
			d:    dev("a", hw(bikeep.HardwareNotResponding)),
			want: []Condition{{Kind: NotResponding, Detail: `hardware_state="NOT_RESPONDING"`}},
		},
		{
			name: "disabled is operator intent, even with a lock disagreement",
			d:    dev("a", hw(bikeep.HardwareDisabled), lock(bikeep.LockUnlocked)),
		},
		{
			name: "dead device keeps its other faults, sorted by kind",
			d:    dev("a", health(bikeep.HealthDead), deadSince(dead), hw(bikeep.HardwareError), lock(bikeep.LockUnlocked)),
			want: []Condition{
				{Kind: Dead, Onset: dead, Detail: `health="DEAD"`},
				{Kind: HardwareError, Detail: `hardware_state="ERROR"`},
				{Kind: LockMismatch, Grace: 2 * time.Minute, Detail: `state="LOCKED" lock_state="UNLOCKED"`},
			},
		},

		// stuck_transition
		{
			name: "locking without timestamps: grace from first seen",
			d:    dev("a", state(bikeep.StateLocking), changedAt(time.Time{})),
			want: []Condition{{Kind: StuckTransition, Grace: 5 * time.Minute, Detail: `state="LOCKING"`}},
		},
		{
			name: "unlocking with changed_at: grace from changed_at",
			d:    dev("a", state(bikeep.StateUnlocking)),
			want: []Condition{{Kind: StuckTransition, Onset: changed, Grace: 5 * time.Minute, Detail: `state="UNLOCKING"`}},
		},
		{
			name: "past timeout_at: a fault at once",
			d:    dev("a", state(bikeep.StateLocking), changedAt(t0.Add(-10*time.Second)), timeoutAt(t0.Add(-time.Nanosecond))),
			want: []Condition{{Kind: StuckTransition, Onset: t0.Add(-10 * time.Second), Detail: `state="LOCKING" past timeout_at`}},
		},
		{
			name: "exactly at timeout_at: not past yet",
			d:    dev("a", state(bikeep.StateLocking), changedAt(t0.Add(-10*time.Second)), timeoutAt(t0)),
			want: []Condition{{Kind: StuckTransition, Onset: t0.Add(-10 * time.Second), Grace: 5 * time.Minute, Detail: `state="LOCKING"`}},
		},
		{
			name: "timeout_at in the future",
			d:    dev("a", state(bikeep.StateUnlocking), changedAt(time.Time{}), timeoutAt(t0.Add(time.Minute))),
			want: []Condition{{Kind: StuckTransition, Grace: 5 * time.Minute, Detail: `state="UNLOCKING"`}},
		},
		{
			name: "disabled_locking: hardware transition timed from first seen, not changed_at",
			d:    dev("a", hw(bikeep.HardwareDisabledLocking), lock(bikeep.LockUnlocked)),
			want: []Condition{{Kind: StuckTransition, Grace: 5 * time.Minute, Detail: `hardware_state="DISABLED_LOCKING"`}},
		},
		{
			name: "disabled_unlocking with a logical transition uses the state's timing",
			d:    dev("a", hw(bikeep.HardwareDisabledUnlocking), state(bikeep.StateUnlocking), timeoutAt(t0.Add(-time.Second))),
			want: []Condition{{Kind: StuckTransition, Onset: changed, Detail: `state="UNLOCKING" hardware_state="DISABLED_UNLOCKING" past timeout_at`}},
		},
		{
			name: "timeout_at on a settled state is not a transition",
			d:    dev("a", timeoutAt(t0.Add(-time.Hour))),
		},

		// lock_mismatch: normal devices
		{
			name: "locker LOCKED/UNLOCKED",
			d:    dev("a", lock(bikeep.LockUnlocked)),
			want: []Condition{{Kind: LockMismatch, Grace: 2 * time.Minute, Detail: `state="LOCKED" lock_state="UNLOCKED"`}},
		},
		{
			name: "bike dock UNLOCKED/LOCKED",
			d:    dev("a", typ(bikeep.TypeBikeDock), state(bikeep.StateUnlocked)),
			want: []Condition{{Kind: LockMismatch, Grace: 2 * time.Minute, Detail: `state="UNLOCKED" lock_state="LOCKED"`}},
		},
		{name: "locker UNLOCKED/UNLOCKED", d: dev("a", state(bikeep.StateUnlocked), lock(bikeep.LockUnlocked))},
		{name: "scooter dock LOCKED/LOCKED", d: dev("a", typ(bikeep.TypeScooterDock))},

		// lock_mismatch: BIKE_HOUSE_DOOR agrees like every other lock; its
		// "inversion" is about availability only.
		{name: "bike house door idle LOCKED/LOCKED agrees", d: dev("a", typ(bikeep.TypeBikeHouseDoor))},
		{name: "bike house door UNLOCKED/UNLOCKED agrees", d: dev("a", typ(bikeep.TypeBikeHouseDoor), state(bikeep.StateUnlocked), lock(bikeep.LockUnlocked))},
		{
			name: "bike house door UNLOCKED/LOCKED is a mismatch",
			d:    dev("a", typ(bikeep.TypeBikeHouseDoor), state(bikeep.StateUnlocked)),
			want: []Condition{{Kind: LockMismatch, Grace: 2 * time.Minute, Detail: `state="UNLOCKED" lock_state="LOCKED"`}},
		},
		{
			name: "bike house door LOCKED/UNLOCKED is a mismatch",
			d:    dev("a", typ(bikeep.TypeBikeHouseDoor), lock(bikeep.LockUnlocked)),
			want: []Condition{{Kind: LockMismatch, Grace: 2 * time.Minute, Detail: `state="LOCKED" lock_state="UNLOCKED"`}},
		},

		// lock_mismatch: no expectation
		{name: "guard has no lock", d: dev("a", typ(bikeep.TypeGuard), lock(bikeep.LockUnlocked))},
		{name: "guard with empty lock_state", d: dev("a", typ(bikeep.TypeGuard), lock(""))},
		{name: "state null", d: dev("a", lock(bikeep.LockUnlocked), func(d *bikeep.Device) { d.State = nil })},
		{name: "allocated", d: dev("a", state(bikeep.StateAllocated), lock(bikeep.LockUnlocked))},
		{name: "booked", d: dev("a", state(bikeep.StateBooked), lock(bikeep.LockUnlocked))},
		{name: "empty lock_state", d: dev("a", lock(""))},
		{name: "empty state.value", d: dev("a", state(""), lock(bikeep.LockUnlocked))},
		{
			name: "locking is a transition, not a mismatch",
			d:    dev("a", state(bikeep.StateLocking), lock(bikeep.LockUnlocked)),
			want: []Condition{{Kind: StuckTransition, Onset: changed, Grace: 5 * time.Minute, Detail: `state="LOCKING"`}},
		},
		{
			name: "unknown state.value: unknown_state, no mismatch",
			d:    dev("a", state("HOVERING"), lock(bikeep.LockUnlocked)),
			want: []Condition{{Kind: UnknownState, Detail: `state="HOVERING"`}},
		},
		{
			name: "unknown lock_state: unknown_state, no mismatch",
			d:    dev("a", lock("AJAR")),
			want: []Condition{{Kind: UnknownState, Detail: `lock_state="AJAR"`}},
		},
		{
			name: "unknown type: unknown_state, no mismatch",
			d:    dev("a", typ("TELEPORTER"), lock(bikeep.LockUnlocked)),
			want: []Condition{{Kind: UnknownState, Detail: `type="TELEPORTER"`}},
		},
		{name: "empty type: no expectation", d: dev("a", typ(""), lock(bikeep.LockUnlocked))},

		// unknown_state
		{
			name: "unknown health",
			d:    dev("a", health("ZOMBIE")),
			want: []Condition{{Kind: UnknownState, Detail: `health="ZOMBIE"`}},
		},
		{
			name: "unknown hardware_state",
			d:    dev("a", hw("QUANTUM_FLUX")),
			want: []Condition{{Kind: UnknownState, Detail: `hardware_state="QUANTUM_FLUX"`}},
		},
		{
			name: "unknown sleep_state",
			d:    dev("a", func(d *bikeep.Device) { d.SleepState = "HIBERNATE" }),
			want: []Condition{{Kind: UnknownState, Detail: `sleep_state="HIBERNATE"`}},
		},
		{
			name: "unknown power_save_strategy",
			d:    dev("a", func(d *bikeep.Device) { d.PowerSaveStrategy = "SOLAR" }),
			want: []Condition{{Kind: UnknownState, Detail: `power_save_strategy="SOLAR"`}},
		},
		{
			name: "several unknown fields in one condition, fixed order",
			d: dev("a", typ("TELEPORTER"), hw("QUANTUM_FLUX"), health("ZOMBIE"),
				func(d *bikeep.Device) { d.PowerSaveStrategy = "SOLAR" }),
			want: []Condition{{Kind: UnknownState,
				Detail: `health="ZOMBIE", hardware_state="QUANTUM_FLUX", power_save_strategy="SOLAR", type="TELEPORTER"`}},
		},
		{
			name: "documented sleep states are known",
			d:    dev("a", func(d *bikeep.Device) { d.SleepState = bikeep.SleepDeep; d.PowerSaveStrategy = bikeep.PowerLocalWakeup }),
		},
		{
			name: "empty strings are not unknown",
			d: dev("a", hw(""), lock(""), state(""), typ(""), health(""),
				func(d *bikeep.Device) { d.PowerSaveStrategy = "" }),
		},
		{
			name: "unknown value is quoted and truncated",
			d:    dev("a", hw(bikeep.HardwareState(strings.Repeat("X", 100)+"\n"))),
			want: []Condition{{Kind: UnknownState, Detail: `hardware_state="` + strings.Repeat("X", 64) + `…"`}},
		},
		{
			name: "unknown plus known fault",
			d:    dev("a", health(bikeep.HealthUnhealthy), func(d *bikeep.Device) { d.SleepState = "NAP" }),
			want: []Condition{
				{Kind: Unhealthy, Detail: `health="UNHEALTHY"`},
				{Kind: UnknownState, Detail: `sleep_state="NAP"`},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ClassifyDevice(&tt.d, t0, params)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ClassifyDevice()\n got %+v\nwant %+v", got, tt.want)
			}
			if !slices.IsSortedFunc(got, func(a, b Condition) int { return strings.Compare(string(a.Kind), string(b.Kind)) }) {
				t.Errorf("not sorted by kind: %v", kinds(got))
			}
		})
	}
}

// TestLockAgreementPerType is the lock_mismatch rule for every documented
// device type, in both directions: state.value LOCKED/UNLOCKED against a
// lock_state that says the opposite is a mismatch for every type with a lock
// (BIKE_HOUSE_DOOR included); an agreeing pair never is; GUARD has no lock;
// ALLOCATED, BOOKED and transitions are never compared.
func TestLockAgreementPerType(t *testing.T) {
	withLock := []bikeep.DeviceType{
		bikeep.TypeBikeDock, bikeep.TypeScooterDock, bikeep.TypeLocker, bikeep.TypeBikeHouseDoor,
		bikeep.TypeBikeRent, bikeep.TypeScooterRent, bikeep.TypeDock, bikeep.TypeDockSessionless, bikeep.TypeDoor,
	}
	pairs := []struct {
		state    bikeep.StateValue
		lock     bikeep.LockState
		mismatch bool // for a type with a lock
	}{
		{bikeep.StateLocked, bikeep.LockLocked, false},
		{bikeep.StateUnlocked, bikeep.LockUnlocked, false},
		{bikeep.StateUnlocked, bikeep.LockLocked, true},
		{bikeep.StateLocked, bikeep.LockUnlocked, true},
		{bikeep.StateAllocated, bikeep.LockLocked, false},
		{bikeep.StateAllocated, bikeep.LockUnlocked, false},
		{bikeep.StateBooked, bikeep.LockLocked, false},
		{bikeep.StateBooked, bikeep.LockUnlocked, false},
		{bikeep.StateLocking, bikeep.LockUnlocked, false},
		{bikeep.StateLocking, bikeep.LockLocked, false},
		{bikeep.StateUnlocking, bikeep.LockLocked, false},
		{bikeep.StateUnlocking, bikeep.LockUnlocked, false},
	}
	check := func(t *testing.T, typ bikeep.DeviceType, st bikeep.StateValue, ls bikeep.LockState, want bool) {
		t.Helper()
		d := dev("a", func(d *bikeep.Device) { d.Type, d.State.Value, d.LockState = typ, st, ls })
		cs := ClassifyDevice(&d, t0, params)
		got := slices.ContainsFunc(cs, func(c Condition) bool { return c.Kind == LockMismatch })
		if got != want {
			t.Errorf("%s state=%s lock_state=%s: lock_mismatch %v, want %v (conditions %v)", typ, st, ls, got, want, kinds(cs))
		}
		for _, c := range cs {
			if c.Kind == LockMismatch && c.Grace != params.LockMismatchGrace {
				t.Errorf("lock_mismatch grace %v, want %v", c.Grace, params.LockMismatchGrace)
			}
		}
	}
	for _, typ := range withLock {
		t.Run(string(typ), func(t *testing.T) {
			for _, p := range pairs {
				check(t, typ, p.state, p.lock, p.mismatch)
			}
		})
	}
	t.Run(string(bikeep.TypeGuard), func(t *testing.T) {
		for _, p := range pairs {
			check(t, bikeep.TypeGuard, p.state, p.lock, false)
		}
		check(t, bikeep.TypeGuard, bikeep.StateUnlocked, "", false)
	})
	t.Run("every documented type is covered", func(t *testing.T) {
		for _, typ := range append(slices.Clone(withLock), bikeep.TypeGuard) {
			if !typ.Known() {
				t.Errorf("%s is not a documented type", typ)
			}
		}
		if n := len(withLock) + 1; n != 10 {
			t.Errorf("%d types covered, the reference documents 10", n)
		}
	})
}

// TestClassifyAllFaultsSorted makes every device fault kind ClassifyDevice
// can produce appear at once and checks the order.
func TestClassifyAllFaultsSorted(t *testing.T) {
	d := dev("a", health(bikeep.HealthUnhealthy), hw(bikeep.HardwareError), lock(bikeep.LockUnlocked),
		func(d *bikeep.Device) { d.SleepState = "NAP" })
	got := kinds(ClassifyDevice(&d, t0, params))
	want := []FaultKind{HardwareError, LockMismatch, Unhealthy, UnknownState}
	if !slices.Equal(got, want) {
		t.Fatalf("kinds = %v, want %v", got, want)
	}
}

func TestConditionActiveAt(t *testing.T) {
	onset := t0.Add(-time.Hour)
	tests := []struct {
		name string
		c    Condition
		now  time.Time
		want bool
	}{
		{"no grace: at once", Condition{}, t0, true},
		{"grace from first seen: not yet", Condition{Grace: 2 * time.Minute}, t0.Add(time.Minute), false},
		{"grace from first seen: exactly the grace", Condition{Grace: 2 * time.Minute}, t0.Add(2 * time.Minute), false},
		{"grace from first seen: just past", Condition{Grace: 2 * time.Minute}, t0.Add(2*time.Minute + time.Nanosecond), true},
		{"grace from onset: exactly", Condition{Onset: onset, Grace: time.Hour}, t0, false},
		{"grace from onset: past", Condition{Onset: onset, Grace: time.Hour}, t0.Add(time.Nanosecond), true},
		{"onset in the future", Condition{Onset: t0.Add(time.Hour), Grace: time.Minute}, t0.Add(time.Minute + time.Second), false},
		{"negative grace is none", Condition{Grace: -time.Second}, t0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.ActiveAt(t0, tt.now); got != tt.want {
				t.Errorf("ActiveAt(t0, %v) = %v, want %v", tt.now.Sub(t0), got, tt.want)
			}
		})
	}
}

// TestClassifyFixture decodes a vendor-shaped listing (the reference text's
// example device and variants) and classifies it.
func TestClassifyFixture(t *testing.T) {
	b, err := os.ReadFile("testdata/devices.json")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Data []bikeep.Device `json:"data"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatalf("decode fixture: %v", err)
	}
	now := time.Date(2025, 1, 15, 12, 10, 0, 0, time.UTC)
	want := map[string][]FaultKind{
		"reference-example":  nil, // GUARD, ALLOCATED, HEALTHY
		"locker-ok":          nil,
		"locker-mismatch":    {LockMismatch},
		"door-idle-ok":       nil,
		"door-mismatch":      {LockMismatch},
		"dock-dead":          {Dead, HardwareError},
		"dock-long-dead":     {LongDead},
		"locker-timed-out":   {StuckTransition},
		"locker-no-health":   nil,
		"locker-unknown":     {UnknownState},
		"locker-disabled":    nil,
		"dock-not-reporting": {NotResponding},
	}
	if len(list.Data) != len(want) {
		t.Fatalf("fixture has %d devices, test expects %d", len(list.Data), len(want))
	}
	for i := range list.Data {
		d := &list.Data[i]
		t.Run(d.ID, func(t *testing.T) {
			exp, ok := want[d.ID]
			if !ok {
				t.Fatalf("unexpected device %q in fixture", d.ID)
			}
			if got := kinds(ClassifyDevice(d, now, params)); !slices.Equal(got, exp) {
				t.Errorf("kinds = %v, want %v", got, exp)
			}
		})
	}
}

func TestClassifyHealthyDoesNotAllocate(t *testing.T) {
	d := dev("a")
	door := dev("b", typ(bikeep.TypeBikeHouseDoor))
	rd, rdoor := d.Record(), door.Record() // what the walk keeps and classifies
	allocs := testing.AllocsPerRun(100, func() {
		if Classify(&rd, t0, params) != nil || Classify(&rdoor, t0, params) != nil {
			t.Fatal("healthy device classified as faulty")
		}
	})
	if allocs != 0 {
		t.Errorf("Classify allocates %v times for healthy devices", allocs)
	}
}
