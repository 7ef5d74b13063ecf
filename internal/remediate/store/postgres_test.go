package store_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetd/fleetd/internal/cluster"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/pgdb"
	"github.com/fleetd/fleetd/internal/pgtest"
	"github.com/fleetd/fleetd/internal/remediate/policy"
	"github.com/fleetd/fleetd/internal/remediate/store"
	"github.com/fleetd/fleetd/internal/remediate/store/storetest"
)

// The PostgreSQL ledger passes the same contract as the bbolt one, against a
// real server.
func TestPostgresContract(t *testing.T) {
	c := pgtest.Start(t)
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		dsn := c.NewDatabase(t)
		return func(t *testing.T) store.Store {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			pool, err := pgdb.Open(ctx, dsn, "")
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			return &closing{store.NewPostgres(pool, pgdb.Redact(dsn), "test", nil), pool}
		}
	})
}

// closing closes the pool with the store, as the daemon does at shutdown.
type closing struct {
	*store.Postgres
	pool *pgxpool.Pool
}

func (c *closing) Close() error { c.pool.Close(); return nil }

// A replica records an attempt only while it holds the location's slot: once
// its lease ran out (a SIGSTOP past lease_ttl, say) and another replica took
// the slot, Reserve fails with cluster.ErrFenced and writes nothing, while
// the new holder records normally.
func TestPostgresReserveIsFencedBySlotLease(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	ctx := context.Background()
	const ttl = 2 * time.Second
	member := func(id string) (*cluster.Membership, *store.Postgres) {
		pool, err := pgdb.Open(ctx, dsn, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		m, err := cluster.New(ctx, pool, cluster.Config{Slots: 1, LeaseTTL: ttl, RenewEvery: 500 * time.Millisecond,
			ReplicaID: id, SendTimeout: 500 * time.Millisecond}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return m, store.NewPostgres(pool, pgdb.Redact(dsn), id, m)
	}
	limits := policy.Limits{Cooldown: time.Minute, MaxAttempts: 3, MaxInFlight: 10}
	res := func(dev string) store.Reservation {
		return store.Reservation{Episode: store.Episode{DeviceID: dev, LocationID: "L1", Fault: health.Unhealthy,
			FirstSeen: time.Unix(1700000000, 0).UTC()}, Source: policy.SourceWalk, Now: time.Now().UTC(), Limits: limits}
	}

	ma, a := member("a")
	if err := ma.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if r, err := a.Reserve(ctx, res("d1")); err != nil || r.Refused != "" {
		t.Fatalf("holder's Reserve = %+v, %v", r, err)
	}

	time.Sleep(ttl + 200*time.Millisecond) // a is frozen past its lease
	mb, b := member("b")
	if err := mb.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Reserve(ctx, res("d2")); !errors.Is(err, cluster.ErrFenced) {
		t.Fatalf("Reserve by the replica that lost the slot = %v, want ErrFenced", err)
	}
	if r, err := b.Reserve(ctx, res("d3")); err != nil || r.Refused != "" {
		t.Fatalf("new holder's Reserve = %+v, %v", r, err)
	}
	st, err := b.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range st.Commands {
		if cmd.DeviceID == "d2" {
			t.Fatal("the fenced replica's attempt was written")
		}
	}
	if len(st.Commands) != 2 {
		t.Fatalf("ledger has %d commands, want d1 and d3", len(st.Commands))
	}
}

// remediation.rate holds for the fleet: two replicas' ledgers draw from one
// bucket in the database, refilled on its clock, and an empty bucket
// refuses as rate_limited without writing anything.
func TestPostgresSharedRate(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	ctx := context.Background()
	replica := func(id string) *store.Postgres {
		pool, err := pgdb.Open(ctx, dsn, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		p := store.NewPostgres(pool, pgdb.Redact(dsn), id, nil)
		p.SetRate(store.Rate{PerSecond: 2, Burst: 3})
		return p
	}
	a, b := replica("a"), replica("b")
	limits := policy.Limits{Cooldown: time.Minute, MaxAttempts: 3, MaxInFlight: 100}
	n := 0
	reserve := func(s *store.Postgres) string {
		n++
		r, err := s.Reserve(ctx, store.Reservation{Episode: store.Episode{DeviceID: "d" + string(rune('a'+n)), LocationID: "L1",
			Fault: health.Unhealthy, FirstSeen: time.Unix(1700000000, 0).UTC()}, Source: policy.SourceWalk, Now: time.Now().UTC(), Limits: limits})
		if err != nil {
			t.Fatal(err)
		}
		return r.Refused
	}
	// The burst of 3 is shared: a takes two, b one, and the fourth waits.
	for i, s := range []*store.Postgres{a, a, b} {
		if got := reserve(s); got != "" {
			t.Fatalf("reservation %d refused: %s", i+1, got)
		}
	}
	if got := reserve(b); got != policy.ReasonRateLimited {
		t.Fatalf("fourth reservation within the burst = %q, want rate_limited", got)
	}
	st, err := a.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Commands) != 3 {
		t.Fatalf("%d commands recorded, want 3 (the refused one wrote nothing)", len(st.Commands))
	}
	time.Sleep(600 * time.Millisecond) // 2/s refills one token
	if got := reserve(a); got != "" {
		t.Fatalf("after a refill: %q", got)
	}
	if got := reserve(b); got != policy.ReasonRateLimited {
		t.Fatalf("right after the refilled token was taken: %q, want rate_limited", got)
	}
}
