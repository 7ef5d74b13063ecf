package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The harness itself: a cluster starts, serves a fresh database, survives a
// stop and a restart on the same port — what the database-loss tests rely on.
func TestClusterStopRestart(t *testing.T) {
	c := Start(t)
	dsn := c.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	query := func() error {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		var one int
		return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
	}
	if err := query(); err != nil {
		t.Fatalf("fresh cluster: %v", err)
	}
	c.Stop()
	if err := query(); err == nil {
		t.Fatal("query succeeded while the server was stopped")
	}
	c.Restart()
	if err := query(); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}
