package health

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/clients/copri"
)

func rental(booking, bike string, l copri.LockState) copri.Rental {
	return copri.Rental{
		BookingID: booking, Bike: bike, Station: "st1", State: copri.StateOccupied, LockState: l,
		StartTime: t0.Add(-time.Hour),
	}
}

func rentalKeys(fs []RentalFault) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Operator+"/"+rentalID(f)+"/"+string(f.Kind))
	}
	return out
}

var byAlias = Match{Field: MatchAlias}

// TestRentalMatchFields checks that every Match field finds the device, via
// a rental_lock_mismatch that is already past its grace (two observations
// more than LockMismatchGrace apart).
func TestRentalMatchFields(t *testing.T) {
	target := dev("t1", lock(bikeep.LockUnlocked), state(bikeep.StateUnlocked), func(d *bikeep.Device) {
		d.Alias, d.Code, d.HardwareID = "A-7", "C-7", "HW-7"
		d.Tags = []string{"no-auto-remediation", "copri:FR1234"}
	})
	other := dev("o1", state(bikeep.StateUnlocked), lock(bikeep.LockUnlocked), func(d *bikeep.Device) {
		d.Alias, d.Code, d.HardwareID = "FR1234x", "FR123", "FR12345"
		d.Tags = []string{"FR1234", "copri:FR9"}
	})
	tests := []struct {
		name  string
		m     Match
		bike  string
		match bool
	}{
		{"alias", Match{Field: MatchAlias}, "A-7", true},
		{"code", Match{Field: MatchCode}, "C-7", true},
		{"hardware_id", Match{Field: MatchHardwareID}, "HW-7", true},
		{"tag with prefix", Match{Field: MatchTag, TagPrefix: "copri:"}, "FR1234", true},
		{"tag without prefix", Match{Field: MatchTag}, "no-auto-remediation", true},
		{"alias does not match code", Match{Field: MatchAlias}, "C-7", false},
		{"tag prefix must match", Match{Field: MatchTag, TagPrefix: "sharee:"}, "FR1234", false},
		{"unknown field", Match{Field: "nr"}, "A-7", false},
		{"no such bike", Match{Field: MatchAlias}, "nope", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker(params)
			rs := []copri.Rental{rental("b1", tt.bike, copri.LockLocked)}
			for _, at := range []time.Duration{0, 2*time.Minute + time.Second} {
				tr.ObserveLocation(t0.Add(at), "loc", []bikeep.Device{other, target})
				tr.ObserveOperator(t0.Add(at), "fr", tt.m, rs, nil)
			}
			fs := tr.Faults()
			if !tt.match {
				if len(fs) != 0 {
					t.Fatalf("faults = %v, want none", faultKeys(fs))
				}
				return
			}
			want := []Fault{{
				Kind: RentalLockMismatch, DeviceID: "t1", Alias: "A-7", Code: "C-7", LocationID: "loc",
				DeviceType: bikeep.TypeLocker, Recoverable: true, Since: t0, FirstSeen: t0, Walks: 2,
				Detail:   `rental lock_state="locked" device lock_state="UNLOCKED"`,
				Operator: "fr", BookingID: "b1",
			}}
			if !reflect.DeepEqual(fs, want) {
				t.Fatalf("faults\n got %+v\nwant %+v", fs, want)
			}
		})
	}
}

func TestRentalLockMismatchRules(t *testing.T) {
	tests := []struct {
		name   string
		rental copri.LockState
		device bikeep.Device
		at     []time.Duration
		want   bool
	}{
		{"locked vs UNLOCKED past grace", copri.LockLocked, dev("d", lock(bikeep.LockUnlocked)), []time.Duration{0, 3 * time.Minute}, true},
		{"unlocked vs LOCKED past grace", copri.LockUnlocked, dev("d"), []time.Duration{0, 3 * time.Minute}, true},
		{"exactly the grace", copri.LockUnlocked, dev("d"), []time.Duration{0, 2 * time.Minute}, false},
		{"first sight", copri.LockUnlocked, dev("d"), []time.Duration{0}, false},
		{"agree locked", copri.LockLocked, dev("d"), []time.Duration{0, time.Hour}, false},
		{"agree unlocked", copri.LockUnlocked, dev("d", lock(bikeep.LockUnlocked), state(bikeep.StateUnlocked)), []time.Duration{0, time.Hour}, false},
		{"rental locking is not compared", copri.LockLocking, dev("d", lock(bikeep.LockUnlocked)), []time.Duration{0, time.Hour}, false},
		{"rental unlocking is not compared", copri.LockUnlocking, dev("d"), []time.Duration{0, time.Hour}, false},
		{"rental lock_state empty", "", dev("d"), []time.Duration{0, time.Hour}, false},
		{"device lock_state empty", copri.LockLocked, dev("d", lock("")), []time.Duration{0, time.Hour}, false},
		{
			"bike house door is not inverted here (physical vs physical)", copri.LockLocked,
			dev("d", typ(bikeep.TypeBikeHouseDoor)), []time.Duration{0, time.Hour}, false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker(params)
			for _, at := range tt.at {
				tr.ObserveLocation(t0.Add(at), "loc", []bikeep.Device{tt.device})
				tr.ObserveOperator(t0.Add(at), "fr", Match{Field: MatchAlias},
					[]copri.Rental{rental("b1", "alias-d", tt.rental)}, nil)
			}
			var got []Fault
			for _, f := range tr.Faults() {
				if f.Kind == RentalLockMismatch {
					got = append(got, f)
				}
			}
			if tt.want != (len(got) == 1) || len(got) > 1 {
				t.Fatalf("rental_lock_mismatch faults = %+v, want present=%v", got, tt.want)
			}
		})
	}
}

func TestRentalLockMismatchEpisodes(t *testing.T) {
	tr := NewTracker(params)
	devs := []bikeep.Device{dev("d", lock(bikeep.LockUnlocked), health(bikeep.HealthDead))}
	obs := func(at time.Duration, rs ...copri.Rental) []Fault {
		tr.ObserveLocation(t0.Add(at), "loc", devs)
		tr.ObserveOperator(t0.Add(at), "fr", byAlias, rs, nil)
		var out []Fault
		for _, f := range tr.Faults() {
			if f.Kind == RentalLockMismatch {
				out = append(out, f)
			}
		}
		return out
	}
	locked := rental("b1", "alias-d", copri.LockLocked)
	obs(0, locked)
	fs := obs(3*time.Minute, locked)
	if len(fs) != 1 || fs[0].Recoverable || fs[0].Walks != 2 {
		t.Fatalf("faults = %+v, want one, not recoverable (device dead), Walks 2", fs)
	}
	if fs := obs(4*time.Minute, rental("b1", "alias-d", copri.LockUnlocked)); len(fs) != 0 {
		t.Fatalf("agreement must clear the fault, got %+v", fs)
	}
	obs(5*time.Minute, locked)
	if fs := obs(7*time.Minute, locked); len(fs) != 0 {
		t.Fatalf("new episode must wait out the grace again, got %+v", fs)
	}
	if fs := obs(7*time.Minute+time.Second, locked); len(fs) != 1 || !fs[0].FirstSeen.Equal(t0.Add(5*time.Minute)) || fs[0].Walks != 3 {
		t.Fatalf("faults = %+v, want the new episode from 5m with Walks 3", fs)
	}
	// Ended rentals are never judged.
	ended := locked
	ended.State = copri.StateAvailable
	if fs := obs(8*time.Minute, ended); len(fs) != 0 {
		t.Fatalf("an ended rental must not keep the fault, got %+v", fs)
	}
}

func TestRentalMatchAmbiguousAndMoved(t *testing.T) {
	t.Run("two devices with the same alias: left alone", func(t *testing.T) {
		tr := NewTracker(params)
		rs := []copri.Rental{rental("b1", "1", copri.LockLocked)}
		for _, at := range []time.Duration{0, time.Hour} {
			tr.ObserveLocation(t0.Add(at), "a", []bikeep.Device{dev("x", lock(bikeep.LockUnlocked), func(d *bikeep.Device) { d.Alias = "1" })})
			tr.ObserveLocation(t0.Add(at), "b", []bikeep.Device{dev("y", lock(bikeep.LockUnlocked), func(d *bikeep.Device) { d.Alias = "1" })})
			tr.ObserveOperator(t0.Add(at), "fr", byAlias, rs, nil)
		}
		for _, f := range tr.Faults() {
			if f.Kind == RentalLockMismatch {
				t.Fatalf("ambiguous match produced %+v", f)
			}
		}
	})
	t.Run("the same device listed in two locations: the newer listing wins", func(t *testing.T) {
		tr := NewTracker(params)
		rs := []copri.Rental{rental("b1", "alias-x", copri.LockLocked)}
		tr.ObserveLocation(t0, "old", []bikeep.Device{dev("x")})
		tr.ObserveLocation(t0.Add(time.Minute), "new", []bikeep.Device{dev("x", lock(bikeep.LockUnlocked))})
		tr.ObserveOperator(t0.Add(time.Minute), "fr", byAlias, rs, nil)
		tr.ObserveOperator(t0.Add(4*time.Minute), "fr", byAlias, rs, nil)
		fs := tr.Faults()
		if len(fs) != 1 || fs[0].LocationID != "new" || fs[0].Kind != RentalLockMismatch {
			t.Fatalf("faults = %+v, want one rental_lock_mismatch in location new", fs)
		}
	})
	t.Run("two bookings on one device: the first booking id claims it", func(t *testing.T) {
		tr := NewTracker(params)
		rs := []copri.Rental{rental("b9", "alias-x", copri.LockLocked), rental("b1", "alias-x", copri.LockLocked)}
		tr.ObserveLocation(t0, "loc", []bikeep.Device{dev("x", lock(bikeep.LockUnlocked))})
		tr.ObserveOperator(t0, "fr", byAlias, rs, nil)
		tr.ObserveOperator(t0.Add(3*time.Minute), "fr", byAlias, rs, nil)
		fs := tr.Faults()
		if len(fs) != 1 || fs[0].BookingID != "b1" || fs[0].Walks != 2 {
			t.Fatalf("faults = %+v, want one claimed by b1 with Walks 2", fs)
		}
	})
	t.Run("two operators on one device: one fault, the older episode", func(t *testing.T) {
		tr := NewTracker(params)
		tr.ObserveLocation(t0, "loc", []bikeep.Device{dev("x", lock(bikeep.LockUnlocked))})
		rs := []copri.Rental{rental("b1", "alias-x", copri.LockLocked)}
		tr.ObserveOperator(t0, "zz", byAlias, rs, nil)
		tr.ObserveOperator(t0.Add(time.Minute), "aa", byAlias, rs, nil)
		tr.ObserveOperator(t0.Add(5*time.Minute), "zz", byAlias, rs, nil)
		tr.ObserveOperator(t0.Add(5*time.Minute), "aa", byAlias, rs, nil)
		fs := tr.Faults()
		if len(fs) != 1 || fs[0].Operator != "zz" || !fs[0].FirstSeen.Equal(t0) {
			t.Fatalf("faults = %+v, want one, from zz (first seen t0)", fs)
		}
	})
}

func TestRentalFaults(t *testing.T) {
	start := t0.Add(-24 * time.Hour)
	tests := []struct {
		name    string
		rentals []copri.Rental
		bikes   []copri.Bike
		at      []time.Duration
		want    []RentalFault
	}{
		{
			name:    "overdue exactly at the max: not yet",
			rentals: []copri.Rental{{BookingID: "b1", Bike: "k1", State: copri.StateOccupied, LockState: copri.LockLocked, StartTime: start}},
			at:      []time.Duration{0},
		},
		{
			name:    "overdue just past the max",
			rentals: []copri.Rental{{BookingID: "b1", Bike: "k1", Station: "s", State: copri.StateOccupied, LockState: copri.LockLocked, StartTime: start}},
			at:      []time.Duration{time.Second},
			want: []RentalFault{{Kind: Overdue, Operator: "fr", BookingID: "b1", Bike: "k1", Station: "s",
				Since: t0, FirstSeen: t0.Add(time.Second), Walks: 1, Detail: "open since 2025-01-14T12:00:00Z"}},
		},
		{
			name:    "no start time: never overdue",
			rentals: []copri.Rental{{BookingID: "b1", Bike: "k1", State: copri.StateOccupied, LockState: copri.LockLocked}},
			at:      []time.Duration{0},
		},
		{
			name:    "locking stuck exactly the grace",
			rentals: []copri.Rental{{BookingID: "b1", Bike: "k1", State: copri.StateOccupied, LockState: copri.LockLocking}},
			at:      []time.Duration{0, 5 * time.Minute},
		},
		{
			name:    "unlocking stuck past the grace",
			rentals: []copri.Rental{{BookingID: "b1", Bike: "k1", State: copri.StateOccupied, LockState: copri.LockUnlocking}},
			at:      []time.Duration{0, 5*time.Minute + time.Second},
			want: []RentalFault{{Kind: LockingStuck, Operator: "fr", BookingID: "b1", Bike: "k1",
				Since: t0, FirstSeen: t0, Walks: 2, Detail: `lock_state="unlocking"`}},
		},
		{
			name:    "ended rental is not judged",
			rentals: []copri.Rental{{BookingID: "b1", Bike: "k1", State: copri.StateCanceled, LockState: copri.LockUnlocking, StartTime: start.Add(-time.Hour)}},
			at:      []time.Duration{0, time.Hour},
		},
		{
			name: "bikes: available and unlocked, exactly the grace",
			bikes: []copri.Bike{{Bike: "k1", Station: "s", State: copri.StateAvailable, LockState: copri.LockUnlocked,
				ServiceState: copri.ServiceOK}},
			at: []time.Duration{0, 2 * time.Minute},
		},
		{
			name: "bikes: available, defect, service defect — unlocked past the grace",
			bikes: []copri.Bike{
				{Bike: "k3", Station: "s", State: copri.StateOccupied, LockState: copri.LockUnlocked, ServiceState: copri.ServiceDefect},
				{Bike: "k1", Station: "s", State: copri.StateAvailable, LockState: copri.LockUnlocked, ServiceState: copri.ServiceOK},
				{Bike: "k2", Station: "s", State: copri.StateDefect, LockState: copri.LockUnlocked},
			},
			at: []time.Duration{0, 2*time.Minute + time.Second},
			want: []RentalFault{
				{Kind: RentalLockMismatchKind, Operator: "fr", Bike: "k1", Station: "s", Since: t0, FirstSeen: t0, Walks: 2,
					Detail: `state="available" lock_state="unlocked"`},
				{Kind: RentalLockMismatchKind, Operator: "fr", Bike: "k2", Station: "s", Since: t0, FirstSeen: t0, Walks: 2,
					Detail: `state="defect" lock_state="unlocked"`},
				{Kind: RentalLockMismatchKind, Operator: "fr", Bike: "k3", Station: "s", Since: t0, FirstSeen: t0, Walks: 2,
					Detail: `service_state="1" lock_state="unlocked"`},
			},
		},
		{
			name: "bikes: healthy combinations",
			bikes: []copri.Bike{
				{Bike: "k1", State: copri.StateAvailable, LockState: copri.LockLocked},
				{Bike: "k2", State: copri.StateOccupied, LockState: copri.LockUnlocked, ServiceState: copri.ServiceTodo},
				{Bike: "k3", State: copri.StateDefect, LockState: copri.LockLocked, ServiceState: copri.ServiceDefect},
				{Bike: "k4", State: copri.StateAvailable, LockState: copri.LockUnlocking},
			},
			at: []time.Duration{0, time.Hour},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker(params)
			for _, at := range tt.at {
				tr.ObserveOperator(t0.Add(at), "fr", byAlias, tt.rentals, tt.bikes)
			}
			got := tr.RentalFaults()
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("RentalFaults()\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestRentalFaultsEpisodesAndSorting(t *testing.T) {
	p := params
	p.RentalMaxDuration = 0 // disabled
	tr := NewTracker(p)
	old := t0.Add(-1000 * time.Hour)
	stuck := func(b string) copri.Rental {
		return copri.Rental{BookingID: b, Bike: "k" + b, State: copri.StateRequested, LockState: copri.LockLocking, StartTime: old}
	}
	tr.ObserveOperator(t0, "b-op", byAlias, []copri.Rental{stuck("2"), stuck("1")}, nil)
	tr.ObserveOperator(t0, "a-op", byAlias, []copri.Rental{stuck("9")}, nil)
	tr.ObserveOperator(t0.Add(6*time.Minute), "b-op", byAlias, []copri.Rental{stuck("2"), stuck("1")}, nil)
	tr.ObserveOperator(t0.Add(6*time.Minute), "a-op", byAlias, []copri.Rental{stuck("9")}, nil)
	want := []string{"a-op/9/locking_stuck", "b-op/1/locking_stuck", "b-op/2/locking_stuck"}
	if got := rentalKeys(tr.RentalFaults()); !slices.Equal(got, want) {
		t.Fatalf("rental faults = %v, want %v (no overdue: disabled)", got, want)
	}
	// Booking 1 settles; 2 goes on; then 1 gets stuck again: a new episode.
	tr.ObserveOperator(t0.Add(7*time.Minute), "b-op", byAlias, []copri.Rental{stuck("2")}, nil)
	tr.ObserveOperator(t0.Add(8*time.Minute), "b-op", byAlias, []copri.Rental{stuck("2"), stuck("1")}, nil)
	fs := tr.RentalFaults()
	if got, want := rentalKeys(fs), []string{"a-op/9/locking_stuck", "b-op/2/locking_stuck"}; !slices.Equal(got, want) {
		t.Fatalf("rental faults = %v, want %v", got, want)
	}
	if fs[1].Walks != 4 || !fs[1].FirstSeen.Equal(t0) {
		t.Errorf("b-op/2 = %+v, want Walks 4 from t0", fs[1])
	}
	tr.ForgetOperator("a-op")
	if got, want := rentalKeys(tr.RentalFaults()), []string{"b-op/2/locking_stuck"}; !slices.Equal(got, want) {
		t.Fatalf("after ForgetOperator: %v, want %v", got, want)
	}
	fs = tr.RentalFaults()
	fs[0].Bike = "mutated"
	if tr.RentalFaults()[0].Bike != "k2" {
		t.Fatal("RentalFaults returned shared data")
	}
}

func TestForgetOperatorAndLocationDropRentalDeviceFaults(t *testing.T) {
	setup := func() *Tracker {
		tr := NewTracker(params)
		rs := []copri.Rental{rental("b1", "alias-x", copri.LockLocked)}
		for _, at := range []time.Duration{0, 3 * time.Minute} {
			tr.ObserveLocation(t0.Add(at), "loc", []bikeep.Device{dev("x", lock(bikeep.LockUnlocked), state(bikeep.StateUnlocked))})
			tr.ObserveOperator(t0.Add(at), "fr", byAlias, rs, nil)
		}
		if got := faultKeys(tr.Faults()); !slices.Equal(got, []string{"loc/x/rental_lock_mismatch"}) {
			t.Fatalf("setup: faults = %v", got)
		}
		return tr
	}
	t.Run("ForgetOperator", func(t *testing.T) {
		tr := setup()
		tr.ForgetOperator("fr")
		if fs := tr.Faults(); len(fs) != 0 {
			t.Fatalf("faults = %v, want none", faultKeys(fs))
		}
	})
	t.Run("ForgetLocation", func(t *testing.T) {
		tr := setup()
		tr.ForgetLocation("loc")
		if fs := tr.Faults(); len(fs) != 0 {
			t.Fatalf("faults = %v, want none", faultKeys(fs))
		}
		// And the device is no longer matched.
		tr.ObserveOperator(t0.Add(time.Hour), "fr", byAlias, []copri.Rental{rental("b1", "alias-x", copri.LockLocked)}, nil)
		tr.ObserveOperator(t0.Add(2*time.Hour), "fr", byAlias, []copri.Rental{rental("b1", "alias-x", copri.LockLocked)}, nil)
		if fs := tr.Faults(); len(fs) != 0 {
			t.Fatalf("faults = %v after the location was forgotten", faultKeys(fs))
		}
	})
}
