package cluster

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// FenceLease checks a lease as the recording transaction would, with a view
// that may be stale: what a replica waking from SIGSTOP still believes.
func (m *Membership) FenceLease(ctx context.Context, tx pgx.Tx, l Lease) error {
	return m.fenceLease(ctx, tx, l)
}
