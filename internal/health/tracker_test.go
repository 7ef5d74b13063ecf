package health

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/clients/copri"
)

// faultKeys renders faults compactly for comparisons: "loc/device/kind".
func faultKeys(fs []Fault) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.LocationID+"/"+f.DeviceID+"/"+string(f.Kind))
	}
	return out
}

func findFault(t *testing.T, fs []Fault, id string, k FaultKind) Fault {
	t.Helper()
	for _, f := range fs {
		if f.DeviceID == id && f.Kind == k {
			return f
		}
	}
	t.Fatalf("no %s fault on %s in %v", k, id, faultKeys(fs))
	return Fault{}
}

func TestTrackerLockMismatchEpisode(t *testing.T) {
	tr := NewTracker(params)
	bad := []bikeep.Device{dev("d1", lock(bikeep.LockUnlocked))}
	good := []bikeep.Device{dev("d1")}
	steps := []struct {
		at        time.Duration
		devices   []bikeep.Device
		active    bool
		walks     int
		firstSeen time.Duration
	}{
		{at: 0, devices: bad},               // appears
		{at: time.Minute, devices: bad},     // within grace
		{at: 2 * time.Minute, devices: bad}, // exactly the grace: not yet
		{at: 2*time.Minute + time.Second, devices: bad, active: true, walks: 4, firstSeen: 0},
		{at: 3 * time.Minute, devices: bad, active: true, walks: 5, firstSeen: 0},
		{at: 4 * time.Minute, devices: good}, // cleared
		{at: 5 * time.Minute, devices: bad},  // new episode: grace starts again
		{at: 7 * time.Minute, devices: bad},  // exactly the grace of the new episode
		{at: 7*time.Minute + time.Nanosecond, devices: bad, active: true, walks: 3, firstSeen: 5 * time.Minute},
	}
	for i, s := range steps {
		t.Run(fmt.Sprintf("step%d_%v", i, s.at), func(t *testing.T) {
			tr.ObserveLocation(t0.Add(s.at), "loc", s.devices)
			fs := tr.Faults()
			if !s.active {
				if len(fs) != 0 {
					t.Fatalf("faults = %v, want none", faultKeys(fs))
				}
				return
			}
			want := Fault{
				Kind: LockMismatch, DeviceID: "d1", Alias: "alias-d1", Code: "code-d1", LocationID: "loc",
				DeviceType: bikeep.TypeLocker, Recoverable: true,
				Since: t0.Add(s.firstSeen), FirstSeen: t0.Add(s.firstSeen), Walks: s.walks,
				Detail: `state="LOCKED" lock_state="UNLOCKED"`,
			}
			if !reflect.DeepEqual(fs, []Fault{want}) {
				t.Fatalf("faults\n got %+v\nwant %+v", fs, []Fault{want})
			}
		})
	}
}

func TestTrackerImmediateFaults(t *testing.T) {
	dead := t0.Add(-48 * time.Hour)
	tr := NewTracker(params)
	tr.ObserveLocation(t0, "loc", []bikeep.Device{
		dev("u", health(bikeep.HealthUnhealthy)),
		dev("d", health(bikeep.HealthDead), deadSince(dead)),
		dev("q", hw("QUANTUM_FLUX")),
	})
	fs := tr.Faults()
	want := []string{"loc/d/dead", "loc/q/unknown_state", "loc/u/unhealthy"}
	if got := faultKeys(fs); !slices.Equal(got, want) {
		t.Fatalf("faults = %v, want %v", got, want)
	}
	if f := findFault(t, fs, "d", Dead); !f.Since.Equal(dead) || !f.FirstSeen.Equal(t0) || f.Walks != 1 || f.Recoverable {
		t.Errorf("dead fault = %+v, want Since=dead_since, FirstSeen=t0, Walks=1, not recoverable", f)
	}
	if f := findFault(t, fs, "u", Unhealthy); !f.Since.Equal(t0) || !f.Recoverable {
		t.Errorf("unhealthy fault = %+v, want Since=t0, recoverable", f)
	}
	if f := findFault(t, fs, "q", UnknownState); f.Recoverable || f.Detail != `hardware_state="QUANTUM_FLUX"` {
		t.Errorf("unknown_state fault = %+v", f)
	}
}

func TestTrackerStuckTransition(t *testing.T) {
	tests := []struct {
		name       string
		d          bikeep.Device
		at         []time.Duration // observation times after t0; the last is judged
		wantActive bool
		wantSince  time.Time
	}{
		{
			name: "changed_at exactly the grace ago",
			d:    dev("d", state(bikeep.StateLocking), changedAt(t0.Add(-5*time.Minute))),
			at:   []time.Duration{0}, wantActive: false,
		},
		{
			name: "changed_at longer than the grace ago: fault on first sight",
			d:    dev("d", state(bikeep.StateLocking), changedAt(t0.Add(-5*time.Minute-time.Second))),
			at:   []time.Duration{0}, wantActive: true, wantSince: t0.Add(-5*time.Minute - time.Second),
		},
		{
			name: "past timeout_at: fault on first sight",
			d:    dev("d", state(bikeep.StateUnlocking), changedAt(t0.Add(-30*time.Second)), timeoutAt(t0.Add(-time.Second))),
			at:   []time.Duration{0}, wantActive: true, wantSince: t0.Add(-30 * time.Second),
		},
		{
			name: "no changed_at: grace from first seen, exactly",
			d:    dev("d", state(bikeep.StateLocking), changedAt(time.Time{})),
			at:   []time.Duration{0, 5 * time.Minute}, wantActive: false,
		},
		{
			name: "no changed_at: grace from first seen, past",
			d:    dev("d", state(bikeep.StateLocking), changedAt(time.Time{})),
			at:   []time.Duration{0, 5*time.Minute + time.Second}, wantActive: true, wantSince: t0,
		},
		{
			name: "disabled_locking ignores an old changed_at",
			d:    dev("d", hw(bikeep.HardwareDisabledLocking), changedAt(t0.Add(-72*time.Hour))),
			at:   []time.Duration{0, time.Minute}, wantActive: false,
		},
		{
			name: "disabled_unlocking past the grace from first seen",
			d:    dev("d", hw(bikeep.HardwareDisabledUnlocking)),
			at:   []time.Duration{0, 6 * time.Minute}, wantActive: true, wantSince: t0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker(params)
			for _, at := range tt.at {
				tr.ObserveLocation(t0.Add(at), "loc", []bikeep.Device{tt.d})
			}
			fs := tr.Faults()
			if !tt.wantActive {
				if len(fs) != 0 {
					t.Fatalf("faults = %v, want none", faultKeys(fs))
				}
				return
			}
			f := findFault(t, fs, "d", StuckTransition)
			if !f.Since.Equal(tt.wantSince) || f.Walks != len(tt.at) || !f.Recoverable {
				t.Errorf("fault = %+v, want Since %v, Walks %d, recoverable", f, tt.wantSince, len(tt.at))
			}
		})
	}
}

func TestTrackerDeadDeviceNotRecoverable(t *testing.T) {
	for _, h := range []bikeep.Health{bikeep.HealthDead, bikeep.HealthLongDead} {
		t.Run(string(h), func(t *testing.T) {
			tr := NewTracker(params)
			tr.ObserveLocation(t0, "loc", []bikeep.Device{
				dev("x", health(h), hw(bikeep.HardwareError)),
				dev("y", hw(bikeep.HardwareError)),
			})
			fs := tr.Faults()
			if len(fs) != 3 {
				t.Fatalf("faults = %v, want 3", faultKeys(fs))
			}
			for _, f := range fs {
				want := f.DeviceID == "y"
				if f.Recoverable != want {
					t.Errorf("%s/%s Recoverable = %v, want %v", f.DeviceID, f.Kind, f.Recoverable, want)
				}
			}
			// The device comes back to life: the same episode becomes recoverable.
			tr.ObserveLocation(t0.Add(time.Minute), "loc", []bikeep.Device{dev("x", hw(bikeep.HardwareError))})
			f := findFault(t, tr.Faults(), "x", HardwareError)
			if !f.Recoverable || f.Walks != 2 || !f.FirstSeen.Equal(t0) {
				t.Errorf("after revival: %+v, want recoverable, Walks 2, FirstSeen t0", f)
			}
		})
	}
}

func TestTrackerLocationsAreIndependent(t *testing.T) {
	tr := NewTracker(params)
	tr.ObserveLocation(t0, "a", []bikeep.Device{dev("a1", health(bikeep.HealthUnhealthy))})
	tr.ObserveLocation(t0, "b", []bikeep.Device{dev("b1", hw(bikeep.HardwareError)), dev("b2", health(bikeep.HealthUnhealthy))})
	tr.ObserveLocation(t0.Add(time.Minute), "a", []bikeep.Device{dev("a1")})
	if got, want := faultKeys(tr.Faults()), []string{"b/b1/hardware_error", "b/b2/unhealthy"}; !slices.Equal(got, want) {
		t.Fatalf("faults = %v, want %v", got, want)
	}
	tr.ObserveLocation(t0.Add(time.Minute), "b", []bikeep.Device{dev("b1", hw(bikeep.HardwareError))})
	if got, want := faultKeys(tr.Faults()), []string{"b/b1/hardware_error"}; !slices.Equal(got, want) {
		t.Fatalf("faults = %v, want %v", got, want)
	}
	tr.ObserveLocation(t0.Add(2*time.Minute), "b", nil) // empty listing clears the location
	if fs := tr.Faults(); len(fs) != 0 {
		t.Fatalf("faults = %v, want none", faultKeys(fs))
	}
}

func TestTrackerForgetLocation(t *testing.T) {
	tr := NewTracker(params)
	tr.ObserveLocation(t0, "a", []bikeep.Device{dev("a1", health(bikeep.HealthUnhealthy)), dev("a2", lock(bikeep.LockUnlocked))})
	tr.ObserveLocation(t0, "b", []bikeep.Device{dev("b1", health(bikeep.HealthUnhealthy))})
	tr.ForgetLocation("a")
	tr.ForgetLocation("never-seen") // harmless
	if got, want := faultKeys(tr.Faults()), []string{"b/b1/unhealthy"}; !slices.Equal(got, want) {
		t.Fatalf("faults = %v, want %v", got, want)
	}
	// Seen again later: everything starts afresh.
	tr.ObserveLocation(t0.Add(time.Hour), "a", []bikeep.Device{dev("a1", health(bikeep.HealthUnhealthy)), dev("a2", lock(bikeep.LockUnlocked))})
	fs := tr.Faults()
	if got, want := faultKeys(fs), []string{"a/a1/unhealthy", "b/b1/unhealthy"}; !slices.Equal(got, want) {
		t.Fatalf("faults = %v, want %v (a2's mismatch must wait out a new grace)", got, want)
	}
	if f := findFault(t, fs, "a1", Unhealthy); !f.FirstSeen.Equal(t0.Add(time.Hour)) || f.Walks != 1 {
		t.Errorf("a1 after forget: %+v, want a new episode", f)
	}
}

func TestTrackerDeviceMoves(t *testing.T) {
	bad := dev("m", health(bikeep.HealthUnhealthy))
	t.Run("new location walked first: episode carried along", func(t *testing.T) {
		tr := NewTracker(params)
		tr.ObserveLocation(t0, "a", []bikeep.Device{bad})
		tr.ObserveLocation(t0.Add(time.Minute), "b", []bikeep.Device{bad})
		tr.ObserveLocation(t0.Add(2*time.Minute), "a", nil) // the device is gone from a
		fs := tr.Faults()
		if len(fs) != 1 {
			t.Fatalf("faults = %v, want exactly one", faultKeys(fs))
		}
		if f := fs[0]; f.LocationID != "b" || !f.FirstSeen.Equal(t0) || f.Walks != 2 {
			t.Errorf("fault = %+v, want location b, FirstSeen t0, Walks 2", f)
		}
		tr.ForgetLocation("a") // must not take the moved device's fault along
		if got := faultKeys(tr.Faults()); !slices.Equal(got, []string{"b/m/unhealthy"}) {
			t.Errorf("after forgetting a: %v", got)
		}
	})
	t.Run("old location walked first: new episode", func(t *testing.T) {
		tr := NewTracker(params)
		tr.ObserveLocation(t0, "a", []bikeep.Device{bad})
		tr.ObserveLocation(t0.Add(time.Minute), "a", nil)
		tr.ObserveLocation(t0.Add(2*time.Minute), "b", []bikeep.Device{bad})
		fs := tr.Faults()
		if len(fs) != 1 || fs[0].LocationID != "b" || !fs[0].FirstSeen.Equal(t0.Add(2*time.Minute)) || fs[0].Walks != 1 {
			t.Fatalf("faults = %+v, want one new episode in b", fs)
		}
	})
}

func TestTrackerDuplicateDeviceCountedOnce(t *testing.T) {
	tr := NewTracker(params)
	d := dev("d", health(bikeep.HealthUnhealthy))
	tr.ObserveLocation(t0, "loc", []bikeep.Device{d, d})
	fs := tr.Faults()
	if len(fs) != 1 || fs[0].Walks != 1 {
		t.Fatalf("faults = %+v, want one with Walks 1", fs)
	}
}

func TestTrackerFaultsIsFreshAndSorted(t *testing.T) {
	tr := NewTracker(params)
	tr.ObserveLocation(t0, "z", []bikeep.Device{dev("z1", health(bikeep.HealthUnhealthy), hw(bikeep.HardwareError))})
	tr.ObserveLocation(t0, "a", []bikeep.Device{dev("a2", hw(bikeep.HardwareNotResponding)), dev("a1", health(bikeep.HealthUnhealthy))})
	fs := tr.Faults()
	want := []string{"a/a1/unhealthy", "a/a2/not_responding", "z/z1/hardware_error", "z/z1/unhealthy"}
	if got := faultKeys(fs); !slices.Equal(got, want) {
		t.Fatalf("faults = %v, want %v", got, want)
	}
	fs[0].DeviceID = "mutated"
	if tr.Faults()[0].DeviceID != "a1" {
		t.Fatal("Faults returned a shared slice")
	}
}

func TestTrackerSetParams(t *testing.T) {
	tr := NewTracker(params)
	bad := []bikeep.Device{dev("d", lock(bikeep.LockUnlocked))}
	tr.ObserveLocation(t0, "loc", bad)
	tr.ObserveLocation(t0.Add(time.Minute), "loc", bad)
	if fs := tr.Faults(); len(fs) != 0 {
		t.Fatalf("faults = %v before the grace", faultKeys(fs))
	}
	p := params
	p.LockMismatchGrace = 30 * time.Second
	tr.SetParams(p)
	tr.ObserveLocation(t0.Add(90*time.Second), "loc", bad)
	fs := tr.Faults()
	if len(fs) != 1 || !fs[0].FirstSeen.Equal(t0) || fs[0].Walks != 3 {
		t.Fatalf("faults = %+v, want the ongoing episode active under the shorter grace", fs)
	}
}

// TestTrackerRandomWalks drives the tracker with a seeded random sequence
// and checks every reported fault against a straightforward model of the
// rules: Walks is the length of the current run of observations showing the
// condition, FirstSeen its first observation, and only conditions past their
// grace are reported.
func TestTrackerRandomWalks(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			tr := NewTracker(params)
			type run struct {
				first time.Time
				walks int
			}
			model := map[string]run{} // "loc/device/kind" → current run
			locs := []string{"l0", "l1", "l2"}
			const perLoc = 8
			now := t0
			for step := range 300 {
				now = now.Add(time.Duration(rng.IntN(90)) * time.Second)
				loc := locs[rng.IntN(len(locs))]
				if rng.IntN(40) == 0 {
					tr.ForgetLocation(loc)
					for k := range model {
						if strings.HasPrefix(k, loc+"/") {
							delete(model, k)
						}
					}
					continue
				}
				var devices []bikeep.Device
				seen := map[string]bool{}
				for i := range perLoc {
					id := fmt.Sprintf("%s-d%d", loc, i)
					d := dev(id)
					if rng.IntN(4) == 0 {
						d.HeartbeatV2.Health = bikeep.HealthUnhealthy
						seen[loc+"/"+id+"/unhealthy"] = true
					}
					if rng.IntN(3) != 0 && i%2 == 0 { // flappy locks on even devices
						d.LockState = bikeep.LockUnlocked
						seen[loc+"/"+id+"/lock_mismatch"] = true
					}
					devices = append(devices, d)
				}
				tr.ObserveLocation(now, loc, devices)
				for k := range model {
					if strings.HasPrefix(k, loc+"/") && !seen[k] {
						delete(model, k)
					}
				}
				for k := range seen {
					r, ok := model[k]
					if !ok {
						r.first = now
					}
					r.walks++
					model[k] = r
				}

				got := tr.Faults()
				for _, f := range got {
					k := f.LocationID + "/" + f.DeviceID + "/" + string(f.Kind)
					r, ok := model[k]
					if !ok {
						t.Fatalf("step %d: reported %s, which the model says is not present", step, k)
					}
					if !f.FirstSeen.Equal(r.first) || f.Walks != r.walks {
						t.Fatalf("step %d: %s FirstSeen %v Walks %d, model %v / %d", step, k, f.FirstSeen, f.Walks, r.first, r.walks)
					}
					if f.Walks < 1 || f.FirstSeen.After(now) || !f.Since.Equal(f.FirstSeen) {
						t.Fatalf("step %d: %s breaks invariants: %+v", step, k, f)
					}
				}
				// Completeness, for the location just walked (its last observation
				// is now): exactly the model's conditions past grace are reported.
				reported := map[string]bool{}
				for _, k := range faultKeys(got) {
					reported[k] = true
				}
				for k, r := range model {
					if !strings.HasPrefix(k, loc+"/") {
						continue
					}
					wantActive := true
					if strings.HasSuffix(k, "/lock_mismatch") {
						wantActive = now.Sub(r.first) > params.LockMismatchGrace
					}
					if reported[k] != wantActive {
						t.Fatalf("step %d: %s reported=%v, want %v (first %v, now %v)", step, k, reported[k], wantActive, r.first, now)
					}
				}
			}
		})
	}
}

// A partial list is no evidence about the devices it lacks: their episodes
// go on exactly as they were (same FirstSeen, so remediation sees the same
// episode), while the devices it does show are judged as usual.
func TestTrackerPartialLocationKeepsCarriedEpisodes(t *testing.T) {
	unhealthy := dev("u", health(bikeep.HealthUnhealthy))
	broken := dev("h", hw(bikeep.HardwareError))
	healed := dev("f", health(bikeep.HealthUnhealthy))
	gone := dev("g", health(bikeep.HealthUnhealthy))

	tr := NewTracker(params)
	tr.ObserveLocation(t0, "loc", []bikeep.Device{unhealthy, broken, healed, gone})
	tr.ObserveLocation(t0.Add(time.Minute), "loc", []bikeep.Device{unhealthy, broken, healed, gone})
	before := tr.Faults()

	// u and h are unreadable in this list (carried); f is read and healthy;
	// g is neither read nor carried (the caller has given up on it).
	tr.ObservePartialLocation(t0.Add(2*time.Minute), "loc", []bikeep.Device{dev("f")}, []bikeep.Device{unhealthy, broken})
	after := tr.Faults()
	if got, want := faultKeys(after), []string{"loc/h/hardware_error", "loc/u/unhealthy"}; !slices.Equal(got, want) {
		t.Fatalf("faults = %v, want %v", got, want)
	}
	for _, f := range after {
		prev := findFault(t, before, f.DeviceID, f.Kind)
		if !reflect.DeepEqual(f, prev) {
			t.Errorf("carried fault changed:\n got %+v\nwant %+v", f, prev)
		}
	}

	// Still partial a walk later: still the same episodes.
	tr.ObservePartialLocation(t0.Add(3*time.Minute), "loc", nil, []bikeep.Device{unhealthy, broken})
	if got := tr.Faults(); !reflect.DeepEqual(got, after) {
		t.Fatalf("second partial walk changed the carried faults:\n got %+v\nwant %+v", got, after)
	}

	// Read again: the episode continues from its first sighting.
	tr.ObservePartialLocation(t0.Add(4*time.Minute), "loc", []bikeep.Device{unhealthy}, []bikeep.Device{broken})
	if f := findFault(t, tr.Faults(), "u", Unhealthy); !f.FirstSeen.Equal(t0) || f.Walks != 3 {
		t.Errorf("u read again = %+v, want FirstSeen t0 and Walks 3", f)
	}

	// A complete list without h: h is gone.
	tr.ObserveLocation(t0.Add(5*time.Minute), "loc", []bikeep.Device{unhealthy})
	if got, want := faultKeys(tr.Faults()), []string{"loc/u/unhealthy"}; !slices.Equal(got, want) {
		t.Fatalf("after a complete list: faults = %v, want %v", got, want)
	}
}

// Grace is judged where the device was last seen: carrying a young lock
// mismatch through partial walks neither activates it nor restarts it.
func TestTrackerPartialLocationDoesNotAgeCarriedConditions(t *testing.T) {
	mismatch := dev("m", lock(bikeep.LockUnlocked))
	tr := NewTracker(params)
	tr.ObserveLocation(t0, "loc", []bikeep.Device{mismatch})
	tr.ObservePartialLocation(t0.Add(time.Hour), "loc", nil, []bikeep.Device{mismatch})
	if fs := tr.Faults(); len(fs) != 0 {
		t.Fatalf("faults = %v: a carried condition became active without being seen", faultKeys(fs))
	}
	tr.ObserveLocation(t0.Add(time.Hour+time.Minute), "loc", []bikeep.Device{mismatch})
	if f := findFault(t, tr.Faults(), "m", LockMismatch); !f.FirstSeen.Equal(t0) || f.Walks != 2 {
		t.Errorf("fault = %+v, want the episode of t0 (grace over since), Walks 2", f)
	}
}

// Carried devices stay matchable by rentals with their last known record.
func TestTrackerCarriedDeviceMatchesRentals(t *testing.T) {
	target := dev("t1", lock(bikeep.LockUnlocked), state(bikeep.StateUnlocked), func(d *bikeep.Device) { d.Alias = "A-7" })
	rs := []copri.Rental{rental("b1", "A-7", copri.LockLocked)}
	tr := NewTracker(params)
	tr.ObserveLocation(t0, "loc", []bikeep.Device{target})
	tr.ObserveOperator(t0, "op", Match{Field: MatchAlias}, rs, nil)
	tr.ObservePartialLocation(t0.Add(3*time.Minute), "loc", nil, []bikeep.Device{target})
	tr.ObserveOperator(t0.Add(3*time.Minute), "op", Match{Field: MatchAlias}, rs, nil)
	f := findFault(t, tr.Faults(), "t1", RentalLockMismatch)
	if f.LocationID != "loc" || !f.FirstSeen.Equal(t0) {
		t.Errorf("fault = %+v, want the rental episode of t0 on the carried device", f)
	}
}
