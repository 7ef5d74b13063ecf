package remediate

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/health"
)

func TestLedgerRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	l, err := OpenLedger(path)
	mustNil(t, err)
	ep := episodeRecord{DeviceID: "d1", Alias: "A1", LocationID: "L1", Fault: health.Unhealthy, FirstSeen: t0, Attempts: 2, LastAttempt: t0.Add(time.Minute)}
	cmd := commandRecord{DeviceID: "d1", LocationID: "L1", Fault: health.Unhealthy, FirstSeen: t0, Attempt: 2, PowerCycle: true,
		SentAt: t0.Add(time.Minute), Phase: phasePolling, CommandID: "c1", TimeoutAt: t0.Add(2 * time.Minute)}
	want := ledgerState{
		pause:    pauseRecord{Paused: true, Reason: "x", Since: t0},
		episodes: []episodeRecord{ep},
		devices:  []deviceRecord{{DeviceID: "d1", LastSend: t0.Add(time.Minute)}},
		commands: []commandRecord{cmd},
		storms:   []stormRecord{{Scope: fleetScope, Since: t0}, {Scope: stormKey("L1"), Since: t0}},
	}
	mustNil(t, l.apply(
		putOp(bucketMeta, string(keyPause), &want.pause),
		putOp(bucketEpisodes, ep.key(), &ep),
		putOp(bucketDevices, "d1", &want.devices[0]),
		putOp(bucketCommands, cmd.key(), &cmd),
		putOp(bucketStorms, fleetScope, &want.storms[0]),
		putOp(bucketStorms, stormKey("L1"), &want.storms[1]),
	))
	mustNil(t, l.Close())
	l, err = OpenLedger(path)
	mustNil(t, err)
	defer l.Close()
	got, err := l.load()
	mustNil(t, err)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
}

func TestLedgerOpenErrors(t *testing.T) {
	// A real ledger with some records, to damage.
	good := filepath.Join(t.TempDir(), "good.db")
	l, err := OpenLedger(good)
	mustNil(t, err)
	for i := range 200 {
		r := deviceRecord{DeviceID: strings.Repeat("d", 50) + string(rune('a'+i%26)) + strings.Repeat("x", i), LastSend: t0}
		mustNil(t, l.apply(putOp(bucketDevices, r.DeviceID, &r)))
	}
	mustNil(t, l.Close())
	goodBytes, err := os.ReadFile(good)
	mustNil(t, err)

	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 64<<10)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	newer := func(t *testing.T, path string) {
		db, err := bolt.Open(path, 0o600, nil)
		mustNil(t, err)
		mustNil(t, db.Update(func(tx *bolt.Tx) error {
			for _, b := range allBuckets() {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(keySchema, []byte("99"))
		}))
		mustNil(t, db.Close())
	}
	badRecord := func(t *testing.T, path string) {
		mustNil(t, os.WriteFile(path, goodBytes, 0o600))
		db, err := bolt.Open(path, 0o600, nil)
		mustNil(t, err)
		mustNil(t, db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketCommands).Put([]byte("k"), []byte("{not json")) }))
		mustNil(t, db.Close())
	}
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		want    string
	}{
		{"random bytes", func(t *testing.T, p string) { mustNil(t, os.WriteFile(p, random, 0o600)) }, "corrupt"},
		{"short garbage", func(t *testing.T, p string) { mustNil(t, os.WriteFile(p, []byte("hello"), 0o600)) }, "ledger"},
		{"truncated real db", func(t *testing.T, p string) { mustNil(t, os.WriteFile(p, goodBytes[:len(goodBytes)/2], 0o600)) }, "corrupt"},
		{"truncated to meta pages", func(t *testing.T, p string) { mustNil(t, os.WriteFile(p, goodBytes[:3*4096], 0o600)) }, "corrupt"},
		{"corrupt pages", func(t *testing.T, p string) {
			b := bytes.Clone(goodBytes)
			for i := 4 * 4096; i < len(b); i++ {
				b[i] = byte(rng.Uint32())
			}
			mustNil(t, os.WriteFile(p, b, 0o600))
		}, "corrupt"},
		{"newer schema", newer, "newer"},
		{"undecodable record", badRecord, "corrupt"},
		{"not a regular file", func(t *testing.T, p string) { mustNil(t, os.Mkdir(p, 0o700)) }, "directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "l.db")
			tc.prepare(t, path)
			before, _ := os.ReadFile(path)
			l, err := OpenLedger(path)
			if err == nil {
				l.Close()
				t.Fatal("OpenLedger succeeded")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q should name the path and say %q", err, tc.want)
			}
			if testing.Verbose() {
				t.Log(err)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(before, after) {
				t.Fatal("the file was modified")
			}
		})
	}
	t.Run("missing directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope", "l.db")
		if _, err := OpenLedger(path); err == nil || !strings.Contains(err.Error(), "nope") {
			t.Fatalf("error %v", err)
		}
		if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
			t.Fatal("directory was created")
		}
	})
	t.Run("locked", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "l.db")
		l, err := OpenLedger(path)
		mustNil(t, err)
		defer l.Close()
		_, err = OpenLedger(path)
		if err == nil || !strings.Contains(err.Error(), "locked by another process") {
			t.Fatalf("second open: %v", err)
		}
	})
}

// TestRestartResumesPolling: an in-flight command survives a restart and is
// polled to its end; nothing is re-sent.
func TestRestartResumesPolling(t *testing.T) {
	p := testPolicy(t.TempDir())
	clock := newClock()
	cmd := newCommander(clock.Now)
	v := startEnv(t, p, clock, cmd)
	f := newFleet(map[string]int{"L1": 10})
	f.fault("L1", 0, health.Unhealthy, t0.Add(-time.Hour), 5)
	v.e.Observe(context.Background(), f.snap(t0))
	v.quiet()
	v.stop()

	gets := cmd.Gets("cmd-1")
	v2 := startEnv(t, p, clock, cmd)
	waitFor(t, "polling to resume", func() bool { return cmd.Gets("cmd-1") > gets })
	if v2.inFlight() != 1 {
		t.Fatalf("in flight after restart = %d", v2.inFlight())
	}
	v2.e.Observe(context.Background(), f.snap(clock.Add(time.Minute)))
	if d := v2.lastDecision("L1-d0"); d.Reason != ReasonInFlight {
		t.Fatalf("%+v, want in_flight", d)
	}
	cmd.SetState("cmd-1", bikeep.CommandSuccess)
	waitFor(t, "success", func() bool { return commandsTotal(v2, health.Unhealthy, ResultSuccess) == 1 })
	clock.Add(time.Minute)
	v2.e.Observe(context.Background(), f.snap(clock.Now()))
	if d := v2.lastDecision("L1-d0"); d.Reason != ReasonCooldown {
		t.Fatalf("%+v, want cooldown (restored from the ledger)", d)
	}
	if n := len(cmd.Sends()); n != 1 {
		t.Fatalf("%d POSTs, want 1", n)
	}
}

// TestRestartMidPOST: fleetd died between the write-ahead record and the
// POST's answer; the device stays blocked until the cooldown has passed.
func TestRestartMidPOST(t *testing.T) {
	p := testPolicy(t.TempDir())
	clock := newClock()
	cmd := newCommander(clock.Now)
	cmd.block = make(chan struct{}) // the POST never answers
	v := startEnv(t, p, clock, cmd)
	f := newFleet(map[string]int{"L1": 10})
	f.fault("L1", 0, health.Unhealthy, t0.Add(-time.Hour), 5)
	v.e.Observe(context.Background(), f.snap(t0))
	// Simulate the crash: read the ledger as a fresh process would see it
	// before the POST returned, by copying the file while the POST blocks.
	crashed := filepath.Join(t.TempDir(), "crashed.db")
	mustNil(t, v.ledger.db.View(func(tx *bolt.Tx) error { return tx.CopyFile(crashed, 0o600) }))
	v.stop()

	p.Ledger = crashed
	cmd2 := newCommander(clock.Now)
	v2 := startEnv(t, p, clock, cmd2)
	if st := v2.e.Status(); len(st.InFlight) != 1 || st.InFlight[0].State != phaseUnknown {
		t.Fatalf("in flight after restart: %+v", st.InFlight)
	}
	for _, step := range []struct {
		d    time.Duration
		want string
	}{{time.Minute, ReasonInFlight}, {14*time.Minute - time.Nanosecond, ReasonInFlight}, {time.Nanosecond, ""}} {
		v2.e.Observe(context.Background(), f.snap(clock.Add(step.d)))
		v2.quiet()
		d := v2.lastDecision("L1-d0")
		if step.want == "" {
			if d.Outcome != OutcomeSent || d.Attempt != 2 {
				t.Fatalf("after cooldown: %+v, want attempt 2", d)
			}
		} else if d.Reason != step.want {
			t.Fatalf("at +%v: %+v, want %s", clock.Now().Sub(t0), d, step.want)
		}
	}
	if n := len(cmd2.Sends()); n != 1 {
		t.Fatalf("%d POSTs after restart, want 1", n)
	}
}

// TestPauseAndStormSurviveRestart.
func TestPauseAndStormSurviveRestart(t *testing.T) {
	p := testPolicy(t.TempDir())
	clock := newClock()
	v := startEnv(t, p, clock, newCommander(clock.Now))
	f := newFleet(map[string]int{"L1": 10, "L2": 40})
	for i := range 4 {
		f.fault("L1", i, health.Unhealthy, t0.Add(-time.Hour), 5)
	}
	v.e.Observe(context.Background(), f.snap(t0)) // storm in L1
	mustNil(t, v.e.Pause("vendor maintenance"))
	v.stop()

	v2 := startEnv(t, p, clock, newCommander(clock.Now))
	st := v2.e.Status()
	if !st.Paused || st.PausedReason != "vendor maintenance" || len(st.Storms) != 1 || st.Storms[0].Scope != "L1" {
		t.Fatalf("after restart: %+v", st)
	}
	mustNil(t, v2.e.Resume("done"))
	// Calm now; the hold-below period starts afresh after the restart.
	f.clearFaults("L1")
	f.fault("L1", 0, health.Unhealthy, t0.Add(-time.Hour), 5)
	v2.e.Observe(context.Background(), f.snap(clock.Add(time.Minute)))
	if d := v2.lastDecision("L1-d0"); d.Reason != ReasonStorm {
		t.Fatalf("%+v, want storm", d)
	}
	v2.e.Observe(context.Background(), f.snap(clock.Add(10*time.Minute)))
	v2.quiet()
	if d := v2.lastDecision("L1-d0"); d.Outcome != OutcomeSent {
		t.Fatalf("%+v, want sent after the storm cooldown", d)
	}
	v2.stop()
	v3 := startEnv(t, p, clock, newCommander(clock.Now))
	if st := v3.e.Status(); st.Paused || len(st.Storms) != 0 {
		t.Fatalf("after second restart: %+v", st)
	}
}

func TestSetPolicyValidation(t *testing.T) {
	v := newEnv(t, nil)
	p := v.e.policy
	p.Trigger = "sometimes"
	if err := v.e.SetPolicy(p); err == nil {
		t.Fatal("invalid trigger accepted")
	}
	p = v.e.policy
	p.Rate = config.Rate{Count: 1, Per: time.Hour}
	mustNil(t, v.e.SetPolicy(p))
	if b := v.e.limiter.Burst(); b != 1 {
		t.Fatalf("burst after reload = %d", b)
	}
}
