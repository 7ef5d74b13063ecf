package store

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

	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/remediate/policy"
)

var t0 = time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)

func mustNil(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestLedgerRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	l, err := OpenBolt(path)
	mustNil(t, err)
	ep := Episode{DeviceID: "d1", Alias: "A1", LocationID: "L1", Fault: health.Unhealthy, FirstSeen: t0, Attempts: 2, LastAttempt: t0.Add(time.Minute)}
	cmd := Command{DeviceID: "d1", LocationID: "L1", Fault: health.Unhealthy, FirstSeen: t0, Attempt: 2, PowerCycle: true,
		SentAt: t0.Add(time.Minute), Phase: PhasePolling, CommandID: "c1", TimeoutAt: t0.Add(2 * time.Minute)}
	want := State{
		Pause:    Pause{Paused: true, Reason: "x", Since: t0},
		Episodes: []Episode{ep},
		Devices:  []Device{{DeviceID: "d1", LastSend: t0.Add(time.Minute)}},
		Commands: []Command{cmd},
		Storms:   []Storm{{Scope: policy.FleetScope, Since: t0}, {Scope: LocationScope("L1"), Since: t0}},
	}
	mustNil(t, l.Apply(context.Background(),
		SetPause(want.Pause), PutEpisode(ep), PutDevice(want.Devices[0]), PutCommand(cmd),
		PutStorm(want.Storms[0]), PutStorm(want.Storms[1]),
	))
	mustNil(t, l.Close())
	l, err = OpenBolt(path)
	mustNil(t, err)
	defer l.Close()
	got, err := l.Load(context.Background())
	mustNil(t, err)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
}

// goodLedger writes a real ledger with some records and returns its bytes.
func goodLedger(t testing.TB) []byte {
	good := filepath.Join(t.TempDir(), "good.db")
	l, err := OpenBolt(good)
	mustNil(t, err)
	for i := range 200 {
		r := Device{DeviceID: strings.Repeat("d", 50) + string(rune('a'+i%26)) + strings.Repeat("x", i), LastSend: t0}
		mustNil(t, l.Apply(context.Background(), PutDevice(r)))
	}
	mustNil(t, l.Close())
	b, err := os.ReadFile(good)
	mustNil(t, err)
	return b
}

// rawBolt creates a bbolt file at path and runs f in a write transaction.
func rawBolt(t testing.TB, path string, f func(tx *bolt.Tx) error) {
	db, err := bolt.Open(path, 0o600, nil)
	mustNil(t, err)
	mustNil(t, db.Update(f))
	mustNil(t, db.Close())
}

// TestLedgerOpenErrors: an existing file that is not a usable ledger is a
// start-up error naming the file and what to do, and the file is left
// byte for byte, modification time included, as it was.
func TestLedgerOpenErrors(t *testing.T) {
	goodBytes := goodLedger(t)
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 64<<10)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	write := func(b []byte) func(t *testing.T, p string) {
		return func(t *testing.T, p string) { mustNil(t, os.WriteFile(p, b, 0o600)) }
	}
	newer := func(t *testing.T, path string) {
		rawBolt(t, path, func(tx *bolt.Tx) error {
			for _, b := range allBuckets() {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(keySchema, []byte("99"))
		})
	}
	badRecord := func(t *testing.T, path string) {
		mustNil(t, os.WriteFile(path, goodBytes, 0o600))
		rawBolt(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketCommands).Put([]byte("k"), []byte("{not json")) })
	}
	const advice = "move it aside (or restore it from a backup)"
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		want    []string
	}{
		{"empty", write(nil), []string{"empty", advice}},
		{"100 bytes", write(goodBytes[:100]), []string{"too short", advice}},
		{"100 bytes of garbage", write(random[:100]), []string{"corrupt", advice}},
		{"random bytes", write(random), []string{"corrupt", advice}},
		{"short garbage", write([]byte("hello")), []string{"ledger", advice}},
		{"half-truncated real db", write(goodBytes[:len(goodBytes)/2]), []string{"corrupt", advice}},
		{"truncated to meta pages", write(goodBytes[:3*4096]), []string{"corrupt", advice}},
		{"corrupt pages", func(t *testing.T, p string) {
			b := bytes.Clone(goodBytes)
			for i := 4 * 4096; i < len(b); i++ {
				b[i] = byte(rng.Uint32())
			}
			mustNil(t, os.WriteFile(p, b, 0o600))
		}, []string{"corrupt", advice}},
		{"a bbolt file without buckets", func(t *testing.T, p string) {
			rawBolt(t, p, func(*bolt.Tx) error { return nil })
		}, []string{"not a fleetd ledger", advice}},
		{"another program's bbolt file", func(t *testing.T, p string) {
			rawBolt(t, p, func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket([]byte("widgets"))
				if err != nil {
					return err
				}
				return b.Put([]byte("k"), []byte("v"))
			})
		}, []string{"not a fleetd ledger", advice}},
		{"fleetd buckets without a schema version", func(t *testing.T, p string) {
			rawBolt(t, p, func(tx *bolt.Tx) error {
				for _, b := range allBuckets() {
					if _, err := tx.CreateBucket(b); err != nil {
						return err
					}
				}
				return nil
			})
		}, []string{"not a fleetd ledger", advice}},
		{"newer schema", newer, []string{"newer", "upgrade fleetd"}},
		{"undecodable record", badRecord, []string{"corrupt", advice}},
		{"not a regular file", func(t *testing.T, p string) { mustNil(t, os.Mkdir(p, 0o700)) }, []string{"directory"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "l.db")
			tc.prepare(t, path)
			old := time.Now().Add(-time.Hour).Truncate(time.Second)
			mustNil(t, os.Chtimes(path, old, old))
			before, _ := os.ReadFile(path)
			l, err := OpenBolt(path)
			if err == nil {
				l.Close()
				t.Fatal("OpenBolt succeeded")
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q should say %q", err, w)
				}
			}
			if testing.Verbose() {
				t.Log(err)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(before, after) {
				t.Fatal("the file was modified")
			}
			st, err := os.Stat(path)
			mustNil(t, err)
			if !st.ModTime().Equal(old) {
				t.Fatalf("modification time changed: %v → %v", old, st.ModTime())
			}
			if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
				t.Fatalf("the directory holds %d entries, want the file alone", len(ents))
			}
		})
	}
	t.Run("missing directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope", "l.db")
		if _, err := OpenBolt(path); err == nil || !strings.Contains(err.Error(), "nope") {
			t.Fatalf("error %v", err)
		}
		if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
			t.Fatal("directory was created")
		}
	})
	t.Run("locked", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "l.db")
		l, err := OpenBolt(path)
		mustNil(t, err)
		defer l.Close()
		_, err = OpenBolt(path)
		if err == nil || !strings.Contains(err.Error(), "locked by another process") {
			t.Fatalf("second open: %v", err)
		}
	})
}

// TestLedgerCreate: only a missing file is created, as a complete ledger,
// with nothing else left in the directory; it then opens as an existing one.
func TestLedgerCreate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "l.db")
	l, err := OpenBolt(path)
	mustNil(t, err)
	mustNil(t, l.Close())
	ents, err := os.ReadDir(dir)
	mustNil(t, err)
	if len(ents) != 1 || ents[0].Name() != "l.db" {
		t.Fatalf("directory after creating the ledger: %v", ents)
	}
	before, err := os.ReadFile(path)
	mustNil(t, err)
	mustNil(t, checkHeader(path, int64(len(before))))
	l, err = OpenBolt(path)
	mustNil(t, err)
	defer l.Close()
	st, err := l.Load(context.Background())
	mustNil(t, err)
	if !reflect.DeepEqual(st, State{}) {
		t.Fatalf("a new ledger holds %+v", st)
	}
}

// TestCopyTo: a copy taken while the ledger is open is a valid ledger with
// the same records.
func TestCopyTo(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenBolt(filepath.Join(dir, "l.db"))
	mustNil(t, err)
	defer l.Close()
	got, err := l.Reserve(context.Background(), Reservation{Episode: Episode{DeviceID: "d1", LocationID: "L1", Fault: health.Unhealthy, FirstSeen: t0},
		Now: t0, Limits: policy.Limits{Cooldown: time.Minute, MaxAttempts: 1, MaxInFlight: 1}})
	mustNil(t, err)
	backup := filepath.Join(dir, "backup.db")
	mustNil(t, l.CopyTo(backup))
	c, err := OpenBolt(backup)
	mustNil(t, err)
	defer c.Close()
	st, err := c.Load(context.Background())
	mustNil(t, err)
	if len(st.Commands) != 1 || st.Commands[0] != got.Command {
		t.Fatalf("copy holds %+v, want %+v", st.Commands, got.Command)
	}
}
