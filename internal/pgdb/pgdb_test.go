package pgdb_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fleetd/fleetd/internal/pgdb"
	"github.com/fleetd/fleetd/internal/pgtest"
	"github.com/fleetd/fleetd/internal/secret"
)

func TestMigrationsAreNumberedWithoutGaps(t *testing.T) {
	ms, err := pgdb.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no embedded migrations")
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://fleetd:hunter2@db:5432/fleetd?sslmode=require", "postgres://fleetd:xxxxx@db:5432/fleetd?sslmode=require"},
		{"postgres://fleetd@db/fleetd?password=hunter2", "postgres://fleetd@db/fleetd?password=xxxxx"},
		{"host=db user=fleetd password=hunter2 dbname=fleetd", "host=db user=fleetd password=xxxxx dbname=fleetd"},
		{"postgres://fleetd@db/fleetd", "postgres://fleetd@db/fleetd"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := pgdb.Redact(tc.in); got != tc.want || strings.Contains(got, "hunter2") {
				t.Fatalf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestOpenMigratesOnceAndRefusesANewerSchema(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Replicas starting together: the advisory lock makes them migrate once.
	errs := make(chan error, 3)
	pools := make(chan *pgxpool.Pool, 3)
	for range 3 {
		go func() {
			p, err := pgdb.Open(ctx, dsn, "")
			errs <- err
			pools <- p
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("Open: %v", err)
		}
		if p := <-pools; p != nil {
			defer p.Close()
		}
	}
	p, err := pgdb.Open(ctx, dsn, "")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ms, _ := pgdb.Migrations()
	var n, max int
	if err := p.QueryRow(ctx, "SELECT count(*), max(version) FROM fleetd_schema").Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) || max != len(ms) {
		t.Fatalf("fleetd_schema has %d rows up to %d, want %d", n, max, len(ms))
	}

	if _, err := p.Exec(ctx, "INSERT INTO fleetd_schema (version, name) VALUES ($1, 'from_the_future')", len(ms)+1); err != nil {
		t.Fatal(err)
	}
	_, err = pgdb.Open(ctx, dsn, "")
	if !errors.Is(err, pgdb.ErrSchemaTooNew) {
		t.Fatalf("Open on a newer schema = %v, want ErrSchemaTooNew", err)
	}
	if strings.Contains(err.Error(), c.Password()) {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func TestOpenTakesThePasswordSeparately(t *testing.T) {
	c := pgtest.Start(t)
	full := c.NewDatabase(t)
	noPass := strings.Replace(full, ":"+c.Password()+"@", "@", 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	if _, err := pgdb.Open(ctx, noPass, "wrong"); err == nil {
		t.Fatal("Open with a wrong password succeeded")
	} else if strings.Contains(err.Error(), "wrong") && strings.Contains(err.Error(), "password=wrong") {
		t.Fatalf("error leaks the password: %v", err)
	}
	p, err := pgdb.Open(ctx, noPass, secret.String(c.Password()))
	if err != nil {
		t.Fatalf("Open with the password from a file: %v", err)
	}
	p.Close()
}
