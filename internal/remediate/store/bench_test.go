package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/remediate/policy"
)

// BenchmarkReserve: one attempt recorded (shared gates re-checked, three
// records written, fsynced) in a ledger that already holds 100 commands in
// flight — the cost every sync-device pays before it leaves.
func BenchmarkReserve(b *testing.B) {
	l, err := OpenBolt(filepath.Join(b.TempDir(), "l.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	lim := policy.Limits{Cooldown: time.Minute, MaxAttempts: 3, MaxInFlight: 1 << 30}
	r := func(i int) Reservation {
		return Reservation{Episode: Episode{DeviceID: fmt.Sprintf("d%d", i), LocationID: "L1", Fault: health.Unhealthy, FirstSeen: t0},
			Now: t0, Limits: lim}
	}
	for i := range 100 {
		if _, err := l.Reserve(context.Background(), r(-1-i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		got, err := l.Reserve(context.Background(), r(i))
		if err != nil || got.Refused != "" {
			b.Fatal(err, got.Refused)
		}
	}
}
