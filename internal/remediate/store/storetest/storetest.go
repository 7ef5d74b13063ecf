// Package storetest is the contract every remediation ledger (store.Store)
// must pass: round trips, the atomic reservation and its refusals, limits
// that hold under concurrent reservations, and durability across reopening.
package storetest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/remediate/policy"
	"github.com/fleetd/fleetd/internal/remediate/store"
)

// Opener opens one ledger; called again after the previous handle was
// closed, it opens the same ledger again.
type Opener func(t *testing.T) store.Store

// Run runs the contract. newLedger returns the Opener of a fresh, empty
// ledger for each subtest.
func Run(t *testing.T, newLedger func(t *testing.T) Opener) {
	tests := []struct {
		name string
		f    func(t *testing.T, newLedger func(t *testing.T) Opener)
	}{
		{"EmptyLedger", testEmpty},
		{"RoundTrip", testRoundTrip},
		{"InvalidRecordsAreRefused", testInvalid},
		{"ReserveRecordsTheAttempt", testReserve},
		{"ReserveRefusals", testRefusals},
		{"RefundGivesBackAnAttemptNeverSent", testRefund},
		{"ParallelReservesKeepTheInFlightCap", testParallelCap},
		{"ParallelReservesOneDevice", testParallelDevice},
		{"ParallelReservesKeepMaxAttempts", testParallelAttempts},
		{"Durability", testDurability},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, newLedger) })
	}
}

var t0 = time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)

var limits = policy.Limits{Cooldown: 15 * time.Minute, MaxAttempts: 3, MaxInFlight: 10, PowerCycleFromAttempt: 2}

func episode(dev string) store.Episode {
	return store.Episode{DeviceID: dev, Alias: "A-" + dev, LocationID: "L1", Fault: health.Unhealthy, FirstSeen: t0.Add(-time.Hour)}
}

func reservation(dev string, now time.Time) store.Reservation {
	return store.Reservation{Episode: episode(dev), Source: policy.SourceWalk, Now: now, Limits: limits}
}

func opened(t *testing.T, open Opener) store.Store {
	t.Helper()
	s := open(t)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func load(t *testing.T, s store.Store) store.State {
	t.Helper()
	st, err := s.Load(context.Background())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	sortState(&st)
	return st
}

func sortState(st *store.State) {
	slices.SortFunc(st.Episodes, func(a, b store.Episode) int { return strings.Compare(a.Key(), b.Key()) })
	slices.SortFunc(st.Devices, func(a, b store.Device) int { return strings.Compare(a.DeviceID, b.DeviceID) })
	slices.SortFunc(st.Commands, func(a, b store.Command) int { return strings.Compare(a.Key(), b.Key()) })
	slices.SortFunc(st.Storms, func(a, b store.Storm) int { return strings.Compare(a.Scope, b.Scope) })
}

func mustApply(t *testing.T, s store.Store, ops ...store.Op) {
	t.Helper()
	if err := s.Apply(context.Background(), ops...); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func reserve(t testing.TB, s store.Store, r store.Reservation) store.Reserved {
	t.Helper()
	got, err := s.Reserve(context.Background(), r)
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	return got
}

func testEmpty(t *testing.T, newLedger func(t *testing.T) Opener) {
	s := opened(t, newLedger(t))
	if st := load(t, s); !reflect.DeepEqual(st, store.State{}) {
		t.Fatalf("a new ledger holds %+v", st)
	}
	if s.String() == "" {
		t.Fatal("String names nothing")
	}
}

// fullState has one record of every kind.
func fullState() store.State {
	ep := episode("d1")
	ep.Attempts, ep.LastAttempt = 2, t0.Add(time.Minute)
	cmd := store.Command{DeviceID: "d1", Alias: "A-d1", LocationID: "L1", Fault: health.Unhealthy, FirstSeen: ep.FirstSeen,
		Attempt: 2, PowerCycle: true, SentAt: t0.Add(time.Minute), Phase: store.PhasePolling, CommandID: "c1",
		TimeoutAt: t0.Add(2 * time.Minute), CorrelationID: "corr", Source: policy.SourceWalk}
	return store.State{
		Pause:    store.Pause{Paused: true, Reason: "vendor maintenance", Since: t0},
		Episodes: []store.Episode{ep},
		Devices:  []store.Device{{DeviceID: "d1", LastSend: t0.Add(time.Minute)}},
		Commands: []store.Command{cmd},
		Storms:   []store.Storm{{Scope: policy.FleetScope, Since: t0}, {Scope: store.LocationScope("L1"), Since: t0}},
	}
}

func putAll(st store.State) []store.Op {
	ops := []store.Op{store.SetPause(st.Pause)}
	for _, r := range st.Episodes {
		ops = append(ops, store.PutEpisode(r))
	}
	for _, r := range st.Devices {
		ops = append(ops, store.PutDevice(r))
	}
	for _, r := range st.Commands {
		ops = append(ops, store.PutCommand(r))
	}
	for _, r := range st.Storms {
		ops = append(ops, store.PutStorm(r))
	}
	return ops
}

func testRoundTrip(t *testing.T, newLedger func(t *testing.T) Opener) {
	s := opened(t, newLedger(t))
	want := fullState()
	mustApply(t, s, putAll(want)...)
	if got := load(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	// A command moves on: the put replaces it.
	done := want.Commands[0]
	done.Phase, done.Result, done.EndedAt = store.PhaseDone, "success", t0.Add(3*time.Minute)
	mustApply(t, s, store.PutCommand(done))
	if got := load(t, s).Commands; len(got) != 1 || !reflect.DeepEqual(got[0], done) {
		t.Fatalf("after the update: %+v", got)
	}
	mustApply(t, s, store.SetPause(store.Pause{Reason: "done", Since: t0.Add(time.Hour)}),
		store.DeleteEpisode(want.Episodes[0].Key()), store.DeleteDevice("d1"), store.DeleteCommand(done.Key()),
		store.DeleteStorm(policy.FleetScope), store.DeleteStorm(store.LocationScope("L1")))
	got := load(t, s)
	if got.Pause.Paused || got.Pause.Reason != "done" || len(got.Episodes)+len(got.Devices)+len(got.Commands)+len(got.Storms) != 0 {
		t.Fatalf("after deleting everything: %+v", got)
	}
}

func testReserve(t *testing.T, newLedger func(t *testing.T) Opener) {
	s := opened(t, newLedger(t))
	got := reserve(t, s, reservation("d1", t0))
	wantEp := episode("d1")
	wantEp.Attempts, wantEp.LastAttempt = 1, t0
	wantCmd := store.Command{DeviceID: "d1", Alias: "A-d1", LocationID: "L1", Fault: health.Unhealthy, FirstSeen: wantEp.FirstSeen,
		Attempt: 1, SentAt: t0, Phase: store.PhaseSending, Source: policy.SourceWalk}
	if got.Refused != "" || !reflect.DeepEqual(got.Episode, wantEp) || !reflect.DeepEqual(got.Command, wantCmd) {
		t.Fatalf("Reserve = %+v\nwant episode %+v\n command %+v", got, wantEp, wantCmd)
	}
	st := load(t, s)
	want := store.State{Episodes: []store.Episode{wantEp}, Devices: []store.Device{{DeviceID: "d1", LastSend: t0}}, Commands: []store.Command{wantCmd}}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("ledger after Reserve:\n got %+v\nwant %+v", st, want)
	}
	// The second attempt, after the first ended and the cooldown passed,
	// counts on from the ledger and power-cycles (power_cycle_from_attempt 2).
	finish(t, s, got.Command, t0.Add(time.Minute))
	r := reservation("d1", t0.Add(limits.Cooldown))
	r.Episode.Attempts = 99 // ignored: the ledger's count is the truth
	got = reserve(t, s, r)
	if got.Refused != "" || got.Episode.Attempts != 2 || got.Command.Attempt != 2 || !got.Command.PowerCycle {
		t.Fatalf("second Reserve = %+v", got)
	}
	// A third, after the fault got a new first-seen time and the device
	// went missing for a while: the same episode, under its first-seen
	// time, no longer absent.
	finish(t, s, got.Command, t0.Add(limits.Cooldown+time.Minute))
	ep := got.Episode
	ep.AbsentSince = t0.Add(limits.Cooldown + 2*time.Minute)
	mustApply(t, s, store.PutEpisode(ep))
	r = reservation("d1", t0.Add(2*limits.Cooldown))
	r.Episode.FirstSeen = t0.Add(limits.Cooldown)
	got = reserve(t, s, r)
	if got.Refused != "" || got.Episode.Attempts != 3 || !got.Episode.FirstSeen.Equal(wantEp.FirstSeen) ||
		!got.Command.FirstSeen.Equal(wantEp.FirstSeen) || !got.Episode.AbsentSince.IsZero() {
		t.Fatalf("third Reserve = %+v", got)
	}
	if eps := load(t, s).Episodes; len(eps) != 1 || eps[0] != got.Episode {
		t.Fatalf("episodes in the ledger: %+v, want the one %+v", eps, got.Episode)
	}
}

// testRefund: an attempt recorded but never sent is given back — its
// write-ahead record goes, the episode counts one attempt fewer, the last
// send (the cooldown) stays — so that the device still gets max_attempts
// commands; nothing is given back that a command was created for, or that
// its episode no longer counts.
func testRefund(t *testing.T, newLedger func(t *testing.T) Opener) {
	refund := func(t *testing.T, s store.Store, c store.Command, prev time.Time) bool {
		t.Helper()
		ok, err := s.Refund(context.Background(), c, prev)
		if err != nil {
			t.Fatalf("Refund: %v", err)
		}
		return ok
	}
	t.Run("the first attempt: the episode goes", func(t *testing.T) {
		s := opened(t, newLedger(t))
		got := reserve(t, s, reservation("d1", t0))
		if !refund(t, s, got.Command, time.Time{}) {
			t.Fatal("the attempt of a command never sent was not given back")
		}
		want := store.State{Devices: []store.Device{{DeviceID: "d1", LastSend: t0}}}
		if st := load(t, s); !reflect.DeepEqual(st, want) {
			t.Fatalf("ledger after Refund:\n got %+v\nwant %+v", st, want)
		}
		if r := reserve(t, s, reservation("d1", t0.Add(time.Minute))); r.Refused != policy.ReasonCooldown {
			t.Fatalf("Reserve within the cooldown = %+v, want refused as cooldown", r)
		}
		if r := reserve(t, s, reservation("d1", t0.Add(limits.Cooldown))); r.Refused != "" || r.Command.Attempt != 1 {
			t.Fatalf("Reserve after the cooldown = %+v, want attempt 1 again", r)
		}
	})
	t.Run("a later attempt: counted back to the one before", func(t *testing.T) {
		s := opened(t, newLedger(t))
		first := reserve(t, s, reservation("d1", t0))
		finish(t, s, first.Command, t0.Add(time.Minute))
		second := reserve(t, s, reservation("d1", t0.Add(limits.Cooldown)))
		if !refund(t, s, second.Command, t0) {
			t.Fatal("the second attempt, never sent, was not given back")
		}
		st := load(t, s)
		if len(st.Episodes) != 1 || st.Episodes[0].Attempts != 1 || !st.Episodes[0].LastAttempt.Equal(t0) {
			t.Fatalf("episodes after Refund: %+v, want one attempt, the last at %s", st.Episodes, t0)
		}
		if len(st.Commands) != 1 || st.Commands[0].Attempt != 1 || st.Commands[0].Phase != store.PhaseDone {
			t.Fatalf("commands after Refund: %+v, want only the first, done", st.Commands)
		}
		third := reserve(t, s, reservation("d1", t0.Add(2*limits.Cooldown)))
		if third.Refused != "" || third.Command.Attempt != 2 {
			t.Fatalf("Reserve after the Refund = %+v, want attempt 2 again", third)
		}
	})
	t.Run("taken over as unknown meanwhile: still given back", func(t *testing.T) {
		s := opened(t, newLedger(t))
		got := reserve(t, s, reservation("d1", t0))
		c := got.Command
		c.Phase = store.PhaseUnknown // a new owner's resync rewrote it
		mustApply(t, s, store.PutCommand(c))
		if !refund(t, s, got.Command, time.Time{}) {
			t.Fatal("not given back")
		}
		if st := load(t, s); len(st.Commands) != 0 || len(st.Episodes) != 0 {
			t.Fatalf("ledger after Refund: %+v, want no command and no episode", st)
		}
	})
	t.Run("a later attempt was recorded meanwhile: still given back", func(t *testing.T) {
		// A new owner released the record as unknown after the cooldown,
		// then recorded and sent the next attempt: of the two counted, one
		// never left.
		s := opened(t, newLedger(t))
		got := reserve(t, s, reservation("d1", t0))
		mustApply(t, s, store.DeleteCommand(got.Command.Key()))
		next := reserve(t, s, reservation("d1", t0.Add(limits.Cooldown)))
		if next.Refused != "" {
			t.Fatalf("next Reserve = %+v", next)
		}
		if !refund(t, s, got.Command, time.Time{}) {
			t.Fatal("not given back")
		}
		st := load(t, s)
		if len(st.Episodes) != 1 || st.Episodes[0].Attempts != 1 || !st.Episodes[0].LastAttempt.Equal(next.Command.SentAt) {
			t.Fatalf("episodes after Refund: %+v, want one attempt, the later one", st.Episodes)
		}
		if len(st.Commands) != 1 || st.Commands[0] != next.Command {
			t.Fatalf("commands after Refund: %+v, want the later attempt's untouched", st.Commands)
		}
	})
	for _, tc := range []struct {
		name string
		// moveOn changes the ledger after the reservation of c.
		moveOn func(t *testing.T, s store.Store, c store.Command)
	}{
		{"the command was created", func(t *testing.T, s store.Store, c store.Command) {
			c.Phase, c.CommandID = store.PhasePolling, "cmd-1"
			mustApply(t, s, store.PutCommand(c))
		}},
		{"the episode ended", func(t *testing.T, s store.Store, c store.Command) {
			ep := episode("d1")
			mustApply(t, s, store.DeleteEpisode(ep.Key()), store.DeleteCommand(c.Key()))
		}},
		{"a new episode started", func(t *testing.T, s store.Store, c store.Command) {
			ep := episode("d1")
			mustApply(t, s, store.DeleteEpisode(ep.Key()), store.DeleteCommand(c.Key()))
			r := reservation("d1", t0.Add(limits.Cooldown))
			r.Episode.FirstSeen = t0.Add(time.Hour)
			if got := reserve(t, s, r); got.Refused != "" {
				t.Fatalf("Reserve in the new episode = %+v", got)
			}
		}},
	} {
		t.Run("nothing given back once "+tc.name, func(t *testing.T) {
			s := opened(t, newLedger(t))
			got := reserve(t, s, reservation("d1", t0))
			tc.moveOn(t, s, got.Command)
			before := load(t, s)
			if refund(t, s, got.Command, time.Time{}) {
				t.Error("Refund gave an attempt back that is not counted any more, or that was sent")
			}
			if after := load(t, s); !reflect.DeepEqual(after, before) {
				t.Fatalf("Refund changed the ledger:\n got %+v\nwant %+v", after, before)
			}
		})
	}
}

// finish ends a command as the engine does when its poll ends.
func finish(t testing.TB, s store.Store, c store.Command, at time.Time) {
	t.Helper()
	c.Phase, c.CommandID, c.Result, c.EndedAt = store.PhaseDone, "cmd-"+c.Key(), "success", at
	if err := s.Apply(context.Background(), store.PutCommand(c)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// testRefusals: each shared gate refuses at its boundary, in table order,
// and a refusal writes nothing.
// refusal is one case of testRefusals: a ledger prepared by setup, the
// reservation it returns, and the shared gate that must refuse it ("" for
// none).
type refusal struct {
	name  string
	setup func(t *testing.T, s store.Store) store.Reservation
	want  string
}

func refusals() []refusal {
	return []refusal{
		{"device in flight", func(t *testing.T, s store.Store) store.Reservation {
			reserve(t, s, reservation("d1", t0))
			return reservation("d1", t0.Add(time.Hour))
		}, policy.ReasonInFlight},
		{"unknown outcome blocks like in flight", func(t *testing.T, s store.Store) store.Reservation {
			c := reserve(t, s, reservation("d1", t0)).Command
			c.Phase, c.Result = store.PhaseUnknown, "send_failed"
			mustApply(t, s, store.PutCommand(c))
			return reservation("d1", t0.Add(time.Hour))
		}, policy.ReasonInFlight},
		{"cooldown just under", func(t *testing.T, s store.Store) store.Reservation {
			finish(t, s, reserve(t, s, reservation("d1", t0)).Command, t0.Add(time.Minute))
			return reservation("d1", t0.Add(limits.Cooldown-time.Nanosecond))
		}, policy.ReasonCooldown},
		{"cooldown passed", func(t *testing.T, s store.Store) store.Reservation {
			finish(t, s, reserve(t, s, reservation("d1", t0)).Command, t0.Add(time.Minute))
			return reservation("d1", t0.Add(limits.Cooldown))
		}, ""},
		{"cooldown of another episode of the device", func(t *testing.T, s store.Store) store.Reservation {
			finish(t, s, reserve(t, s, reservation("d1", t0)).Command, t0.Add(time.Minute))
			r := reservation("d1", t0.Add(time.Minute))
			r.Episode.Fault = health.HardwareError
			return r
		}, policy.ReasonCooldown},
		{"exhausted", func(t *testing.T, s store.Store) store.Reservation {
			mustApply(t, s, store.PutEpisode(store.Episode{DeviceID: "d1", LocationID: "L1", Fault: health.Unhealthy,
				FirstSeen: episode("d1").FirstSeen, Attempts: limits.MaxAttempts, LastAttempt: t0}))
			return reservation("d1", t0.Add(time.Hour))
		}, policy.ReasonExhausted},
		{"a new first-seen time is the same episode", func(t *testing.T, s store.Store) store.Reservation {
			mustApply(t, s, store.PutEpisode(store.Episode{DeviceID: "d1", LocationID: "L1", Fault: health.Unhealthy,
				FirstSeen: episode("d1").FirstSeen, Attempts: limits.MaxAttempts, LastAttempt: t0}))
			r := reservation("d1", t0.Add(time.Hour))
			r.Episode.FirstSeen = t0 // the fault was forgotten and seen again
			return r
		}, policy.ReasonExhausted},
		{"episodes under several first-seen times add up", func(t *testing.T, s store.Store) store.Reservation {
			for i := range limits.MaxAttempts {
				mustApply(t, s, store.PutEpisode(store.Episode{DeviceID: "d1", LocationID: "L1", Fault: health.Unhealthy,
					FirstSeen: t0.Add(time.Duration(i) * time.Minute), Attempts: 1, LastAttempt: t0}))
			}
			return reservation("d1", t0.Add(time.Hour))
		}, policy.ReasonExhausted},
		{"another fault of the device is another episode", func(t *testing.T, s store.Store) store.Reservation {
			mustApply(t, s, store.PutEpisode(store.Episode{DeviceID: "d1", LocationID: "L1", Fault: health.Unhealthy,
				FirstSeen: episode("d1").FirstSeen, Attempts: limits.MaxAttempts, LastAttempt: t0}))
			r := reservation("d1", t0.Add(time.Hour))
			r.Episode.Fault = health.HardwareError
			return r
		}, ""},
		{"in-flight cap", func(t *testing.T, s store.Store) store.Reservation {
			for i := range limits.MaxInFlight {
				reserve(t, s, reservation(fmt.Sprintf("other%d", i), t0))
			}
			return reservation("d1", t0)
		}, policy.ReasonMaxInFlight},
		{"finished commands leave the cap", func(t *testing.T, s store.Store) store.Reservation {
			for i := range limits.MaxInFlight {
				c := reserve(t, s, reservation(fmt.Sprintf("other%d", i), t0)).Command
				if i == 0 {
					finish(t, s, c, t0)
				}
			}
			return reservation("d1", t0)
		}, ""},
		{"in flight before cooldown", func(t *testing.T, s store.Store) store.Reservation {
			reserve(t, s, reservation("d1", t0))
			return reservation("d1", t0.Add(time.Second))
		}, policy.ReasonInFlight},
		{"exhausted before in-flight cap", func(t *testing.T, s store.Store) store.Reservation {
			for i := range limits.MaxInFlight {
				reserve(t, s, reservation(fmt.Sprintf("other%d", i), t0))
			}
			mustApply(t, s, store.PutEpisode(store.Episode{DeviceID: "d1", LocationID: "L1", Fault: health.Unhealthy,
				FirstSeen: episode("d1").FirstSeen, Attempts: limits.MaxAttempts, LastAttempt: t0}))
			return reservation("d1", t0.Add(time.Hour))
		}, policy.ReasonExhausted},
	}
}

func testRefusals(t *testing.T, newLedger func(t *testing.T) Opener) {
	for _, tc := range refusals() {
		t.Run(tc.name, func(t *testing.T) {
			s := opened(t, newLedger(t))
			r := tc.setup(t, s)
			before := load(t, s)
			got := reserve(t, s, r)
			if got.Refused != tc.want {
				t.Fatalf("Refused = %q, want %q", got.Refused, tc.want)
			}
			after := load(t, s)
			if tc.want != "" {
				if !reflect.DeepEqual(before, after) || got.Command != (store.Command{}) {
					t.Fatalf("a refused reservation wrote to the ledger or returned records: %+v", got)
				}
				return
			}
			if len(after.Commands) != len(before.Commands)+1 {
				t.Fatalf("%d commands after an accepted Reserve, had %d", len(after.Commands), len(before.Commands))
			}
		})
	}
}

// testInvalid: Apply refuses a record that Load would refuse, and writes
// nothing of its transaction, so a bug in a caller cannot make the ledger
// unreadable at the next start.
func testInvalid(t *testing.T, newLedger func(t *testing.T) Opener) {
	s := opened(t, newLedger(t))
	good := fullState()
	tests := []struct {
		name string
		op   store.Op
	}{
		{"empty command", store.PutCommand(store.Command{})},
		{"command without phase", store.PutCommand(func() store.Command { c := good.Commands[0]; c.Phase = ""; return c }())},
		{"polling command without id", store.PutCommand(func() store.Command { c := good.Commands[0]; c.CommandID = ""; return c }())},
		{"episode without attempts", store.PutEpisode(func() store.Episode { e := good.Episodes[0]; e.Attempts = 0; return e }())},
		{"device without a send", store.PutDevice(store.Device{DeviceID: "d1"})},
		{"storm without scope", store.PutStorm(store.Storm{Since: t0})},
	}
	for _, tc := range tests {
		err := s.Apply(context.Background(), store.PutDevice(good.Devices[0]), tc.op)
		if err == nil {
			t.Errorf("%s: Apply accepted an invalid record", tc.name)
		}
		if st := load(t, s); len(st.Devices) != 0 {
			t.Fatalf("%s: the valid half of a refused transaction was written", tc.name)
		}
	}
}
