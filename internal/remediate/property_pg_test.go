package remediate

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/pgdb"
	"github.com/fleetd/fleetd/internal/pgtest"
	"github.com/fleetd/fleetd/internal/remediate/store"
)

// The remediation property test with the ledger in a real PostgreSQL
// (skipped without one under plain go test): the same random faults,
// glitches, throttling and restarts, the same safety properties.
func TestPropertyRandomFaultsPostgres(t *testing.T) {
	c := pgtest.Start(t)
	seeds := []uint64{1, 2}
	steps := 300
	if testing.Short() {
		seeds, steps = seeds[:1], 100
	}
	total := map[string]int{}
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			dsn := c.NewDatabase(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			pool, err := pgdb.Open(ctx, dsn, "")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			open := func() (store.Store, error) {
				return store.NewPostgres(pool, pgdb.Redact(dsn), "property", nil), nil
			}
			if err := runProperty(t, seed, steps, total, open); err != "" {
				t.Fatalf("seed %d: %s", seed, err)
			}
		})
	}
	t.Logf("all seeds: %v", total)
	if total["restarts"] == 0 {
		t.Error("no run restarted the engine on the PostgreSQL ledger")
	}
}
