package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fleetd/fleetd/internal/remediate/policy"
)

// reserveLock is the transaction-scoped advisory lock every Reserve takes:
// the fleet-wide in-flight cap is a count over all replicas' commands, so
// reservations are serialised across the cluster ("fleetd-r" in ASCII).
// They are rare (at most remediation.rate a minute) and short.
const reserveLock int64 = 0x666c656574642d72

// Fencer lets a replicated ledger refuse attempts for locations whose slot
// lease this replica no longer holds: it checks the lease inside the
// recording transaction and holds its row lock until the commit.
type Fencer interface {
	Fence(ctx context.Context, tx pgx.Tx, locationID string) error
}

// Postgres is the ledger in PostgreSQL: the Store for several replicas.
// Every method is one transaction; a commit is durable on the server.
type Postgres struct {
	pool    *pgxpool.Pool
	name    string // for messages: the redacted DSN
	replica string
	fence   Fencer
	// rate is the fleet-wide token bucket Reserve draws from; nil draws
	// nothing.
	rate atomic.Pointer[Rate]
}

// Rate is a token bucket: PerSecond tokens a second, at most Burst.
type Rate struct {
	PerSecond float64
	Burst     int
}

// SetRate makes every Reserve take a token from the bucket shared by all
// replicas (remediation.rate for the whole fleet, not per replica); it is
// refilled on the database clock. A reservation that finds it empty is
// refused as rate_limited.
func (p *Postgres) SetRate(r Rate) { p.rate.Store(&r) }

var _ Store = (*Postgres)(nil)

// NewPostgres returns the ledger in the (migrated) database behind pool.
// name is how messages refer to it and must not hold a password. fence may
// be nil for one replica without a cluster section.
func NewPostgres(pool *pgxpool.Pool, name, replica string, fence Fencer) *Postgres {
	return &Postgres{pool: pool, name: name, replica: replica, fence: fence}
}

func (p *Postgres) String() string { return p.name }

// Close leaves the pool to its owner, which shares it with the cluster
// membership.
func (p *Postgres) Close() error { return nil }

// Load reads and validates every record, like the bbolt ledger.
func (p *Postgres) Load(ctx context.Context) (State, error) {
	var st State
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		var raw []byte
		switch err := tx.QueryRow(ctx, `SELECT value FROM remediation_pause`).Scan(&raw); {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		default:
			if err := json.Unmarshal(raw, &st.Pause); err != nil {
				return fmt.Errorf("remediation_pause: %w", err)
			}
		}
		var err error
		if st.Episodes, err = loadTable[Episode](ctx, tx, `SELECT key, value FROM remediation_episodes ORDER BY key`); err != nil {
			return err
		}
		if st.Devices, err = loadTable[Device](ctx, tx, `SELECT device_id, value FROM remediation_devices ORDER BY device_id`); err != nil {
			return err
		}
		if st.Commands, err = loadTable[Command](ctx, tx, `SELECT key, value FROM remediation_commands ORDER BY key`); err != nil {
			return err
		}
		st.Storms, err = loadTable[Storm](ctx, tx, `SELECT scope, value FROM remediation_storms ORDER BY scope`)
		return err
	})
	if err != nil {
		return State{}, fmt.Errorf("read ledger %s: %w", p.name, err)
	}
	return st, nil
}

func loadTable[T any, P interface {
	*T
	record
}](ctx context.Context, tx pgx.Tx, sql string) ([]T, error) {
	rows, err := tx.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	var (
		out []T
		key []byte
		raw []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&key, &raw}, func() error {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("%q: decode: %w", key, err)
		}
		if !P(&v).valid(string(key)) {
			return fmt.Errorf("%q: invalid record %s", key, raw)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// Apply writes ops in one transaction.
func (p *Postgres) Apply(ctx context.Context, ops ...Op) error {
	if len(ops) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error { return p.applyOps(ctx, tx, ops) })
	if err != nil {
		return fmt.Errorf("write ledger %s: %w", p.name, err)
	}
	return nil
}

func (p *Postgres) applyOps(ctx context.Context, tx pgx.Tx, ops []Op) error {
	for _, op := range ops {
		if r, ok := op.value.(record); ok && op.value != nil && !r.valid(op.key) {
			return fmt.Errorf("refusing to write an invalid record %q: %+v", op.key, op.value)
		}
		if err := p.applyOp(ctx, tx, op); err != nil {
			return fmt.Errorf("%q: %w", op.key, err)
		}
	}
	return nil
}

// text makes s storable in a text column, which cannot hold NUL. Only the
// query columns go through it; the record itself is kept byte for byte.
// Vendor ids cannot hold NUL (limits.ID refuses control characters); the
// store does not rely on that.
func text(s string) string { return strings.ReplaceAll(s, "\x00", "\uFFFD") }

// dbKey is op's key as the column type wants it: bytea for the composite
// keys of episodes and commands, text for device ids and storm scopes.
func dbKey(op Op) any {
	if op.kind == opEpisode || op.kind == opCommand {
		return []byte(op.key)
	}
	return text(op.key)
}

func (p *Postgres) applyOp(ctx context.Context, tx pgx.Tx, op Op) error {
	del := map[opKind]string{
		opPause:   `DELETE FROM remediation_pause`,
		opEpisode: `DELETE FROM remediation_episodes WHERE key = $1`,
		opDevice:  `DELETE FROM remediation_devices WHERE device_id = $1`,
		opCommand: `DELETE FROM remediation_commands WHERE key = $1`,
		opStorm:   `DELETE FROM remediation_storms WHERE scope = $1`,
	}
	if op.value == nil {
		args := []any{dbKey(op)}
		if op.kind == opPause {
			args = nil
		}
		_, err := tx.Exec(ctx, del[op.kind], args...)
		return err
	}
	raw, err := json.Marshal(op.value)
	if err != nil {
		return err
	}
	switch v := op.value.(type) {
	case *Pause:
		_, err = tx.Exec(ctx, `INSERT INTO remediation_pause (value) VALUES ($1)
			ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value`, raw)
	case *Episode:
		_, err = tx.Exec(ctx, `INSERT INTO remediation_episodes (key, device_id, location_id, fault, attempts, value)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO UPDATE SET device_id = EXCLUDED.device_id,
			location_id = EXCLUDED.location_id, fault = EXCLUDED.fault, attempts = EXCLUDED.attempts, value = EXCLUDED.value`,
			[]byte(op.key), text(v.DeviceID), text(v.LocationID), text(string(v.Fault)), v.Attempts, raw)
	case *Device:
		_, err = tx.Exec(ctx, `INSERT INTO remediation_devices (device_id, last_send, value) VALUES ($1, $2, $3)
			ON CONFLICT (device_id) DO UPDATE SET last_send = EXCLUDED.last_send, value = EXCLUDED.value`,
			text(op.key), v.LastSend, raw)
	case *Command:
		_, err = tx.Exec(ctx, `INSERT INTO remediation_commands (key, device_id, location_id, fault, attempt, phase, sent_at, value)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (key) DO UPDATE SET phase = EXCLUDED.phase, value = EXCLUDED.value`,
			[]byte(op.key), text(v.DeviceID), text(v.LocationID), text(string(v.Fault)), v.Attempt, v.Phase, v.SentAt, raw)
		if err == nil {
			_, err = tx.Exec(ctx, `INSERT INTO remediation_history
				(replica, device_id, location_id, fault, attempt, phase, result, command_id, value)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
				p.replica, text(v.DeviceID), text(v.LocationID), text(string(v.Fault)), v.Attempt, v.Phase, text(v.Result), text(v.CommandID), raw)
		}
	case *Storm:
		_, err = tx.Exec(ctx, `INSERT INTO remediation_storms (scope, value) VALUES ($1, $2)
			ON CONFLICT (scope) DO UPDATE SET value = EXCLUDED.value`, text(op.key), raw)
	default:
		err = fmt.Errorf("unknown record type %T", op.value)
	}
	return err
}

// Reserve re-checks the shared gates and records the attempt in one
// transaction, serialised cluster-wide by an advisory lock and, with a
// Fencer, only while this replica holds the location's slot lease.
func (p *Postgres) Reserve(ctx context.Context, r Reservation) (Reserved, error) {
	var out Reserved
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		out = Reserved{}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, reserveLock); err != nil {
			return err
		}
		if p.fence != nil {
			if err := p.fence.Fence(ctx, tx, r.Episode.LocationID); err != nil {
				return err
			}
		}
		ep, shared, err := p.sharedState(ctx, tx, r.Episode)
		if err != nil {
			return err
		}
		if out.Refused = policy.CheckShared(r.Limits, shared, r.Now); out.Refused != "" {
			return errRefused // roll back: a refusal writes nothing
		}
		ep, cmd := nextAttempt(ep, r)
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM remediation_commands WHERE key = $1)`, []byte(cmd.Key())).Scan(&exists); err != nil {
			return err
		}
		if exists {
			// Never overwrite the record of a command that may exist.
			out.Refused = policy.ReasonInFlight
			return errRefused
		}
		if rate := p.rate.Load(); rate != nil {
			ok, err := takeToken(ctx, tx, *rate)
			if err != nil {
				return err
			}
			if !ok {
				out.Refused = policy.ReasonRateLimited
				return errRefused
			}
		}
		out.Episode, out.Command = ep, cmd
		return p.applyOps(ctx, tx, []Op{PutEpisode(ep), PutDevice(Device{DeviceID: ep.DeviceID, LastSend: r.Now}), PutCommand(cmd)})
	})
	switch {
	case errors.Is(err, errRefused):
		return Reserved{Refused: out.Refused}, nil
	case err != nil:
		return Reserved{}, fmt.Errorf("write ledger %s: %w", p.name, err)
	}
	return out, nil
}

// Refund gives back an attempt never sent (see Store.Refund) in one
// transaction under Reserve's advisory lock, so that no reservation of the
// device can interleave. It is not fenced: the replica that recorded the
// attempt may have lost the slot since — that is why nothing was sent —
// and only the ledger's own records decide what is given back.
func (p *Postgres) Refund(ctx context.Context, cmd Command, prevAttempt time.Time) (bool, error) {
	var refunded bool
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		refunded = false
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, reserveLock); err != nil {
			return err
		}
		ep, err := p.mergedEpisode(ctx, tx, Episode{DeviceID: cmd.DeviceID, Fault: cmd.Fault, FirstSeen: cmd.FirstSeen})
		if err != nil {
			return err
		}
		var (
			rec *Command
			raw []byte
		)
		switch err := tx.QueryRow(ctx, `SELECT value FROM remediation_commands WHERE key = $1 FOR UPDATE`, []byte(cmd.Key())).Scan(&raw); {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		default:
			rec = new(Command)
			if err := json.Unmarshal(raw, rec); err != nil {
				return fmt.Errorf("command %q: decode: %w", cmd.Key(), err)
			}
		}
		var ops []Op
		ops, refunded = refundOps(cmd, prevAttempt, ep, rec)
		return p.applyOps(ctx, tx, ops)
	})
	if err != nil {
		return false, fmt.Errorf("write ledger %s: %w", p.name, err)
	}
	return refunded, nil
}

func (p *Postgres) sharedState(ctx context.Context, tx pgx.Tx, want Episode) (Episode, policy.Shared, error) {
	var s policy.Shared
	ep, err := p.mergedEpisode(ctx, tx, want)
	if err != nil {
		return ep, s, err
	}
	s.Attempts = ep.Attempts
	switch err := tx.QueryRow(ctx, `SELECT last_send FROM remediation_devices WHERE device_id = $1`, text(ep.DeviceID)).Scan(&s.LastSend); {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return ep, s, err
	}
	err = tx.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE device_id = $1) > 0
		FROM remediation_commands WHERE phase <> $2`, text(ep.DeviceID), PhaseDone).Scan(&s.InFlight, &s.DeviceInFlight)
	return ep, s, err
}

// takeToken refills the shared bucket to now() and takes one token if there
// is one. Reserve's advisory lock serialises it with every other Reserve.
func takeToken(ctx context.Context, tx pgx.Tx, r Rate) (bool, error) {
	if _, err := tx.Exec(ctx, `INSERT INTO remediation_rate (tokens, updated_at) VALUES ($1, now()) ON CONFLICT DO NOTHING`,
		float64(r.Burst)); err != nil {
		return false, err
	}
	tag, err := tx.Exec(ctx, `UPDATE remediation_rate
		SET tokens = least($1, tokens + extract(epoch FROM now() - updated_at) * $2) - 1, updated_at = now()
		WHERE least($1, tokens + extract(epoch FROM now() - updated_at) * $2) >= 1`, float64(r.Burst), r.PerSecond)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// mergedEpisode finds the episode of (device, fault) whatever its first-seen
// time. Records of the pair under several first-seen times are one episode,
// as in the bbolt ledger: their attempts add up under the earliest and the
// others are deleted in this transaction.
func (p *Postgres) mergedEpisode(ctx context.Context, tx pgx.Tx, want Episode) (Episode, error) {
	ep := Episode{DeviceID: want.DeviceID, Fault: want.Fault, FirstSeen: want.FirstSeen}
	// The text columns narrow the search; the exact key prefix decides
	// (they hold U+FFFD where an id held NUL).
	rows, err := tx.Query(ctx, `SELECT key, value FROM remediation_episodes WHERE device_id = $1 AND fault = $2 FOR UPDATE`,
		text(want.DeviceID), text(string(want.Fault)))
	if err != nil {
		return ep, err
	}
	prefix := episodePrefix(want.DeviceID, want.Fault)
	var (
		found    []Episode
		key, raw []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&key, &raw}, func() error {
		if !strings.HasPrefix(string(key), prefix) {
			return nil
		}
		var r Episode
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("episode %q: decode: %w", key, err)
		}
		found = append(found, r)
		return nil
	})
	if err != nil || len(found) == 0 {
		return ep, err
	}
	slices.SortFunc(found, func(a, b Episode) int { return a.FirstSeen.Compare(b.FirstSeen) })
	ep = found[0]
	for _, r := range found[1:] {
		ep.Attempts += r.Attempts
		if r.LastAttempt.After(ep.LastAttempt) {
			ep.LastAttempt = r.LastAttempt
		}
		if _, err := tx.Exec(ctx, `DELETE FROM remediation_episodes WHERE key = $1`, []byte(r.Key())); err != nil {
			return ep, err
		}
	}
	return ep, nil
}

// Prune deletes history older than retention and returns how many rows went.
func (p *Postgres) Prune(ctx context.Context, retention time.Duration) (int64, error) {
	tag, err := p.pool.Exec(ctx, `DELETE FROM remediation_history WHERE at < now() - $1::interval`, retention)
	if err != nil {
		return 0, fmt.Errorf("prune ledger history %s: %w", p.name, err)
	}
	return tag.RowsAffected(), nil
}

// LoadPause reads the pause alone: replicas read it before every pass, so
// that a pause set through any replica holds for all.
func (p *Postgres) LoadPause(ctx context.Context) (Pause, error) {
	var (
		st  Pause
		raw []byte
	)
	switch err := p.pool.QueryRow(ctx, `SELECT value FROM remediation_pause`).Scan(&raw); {
	case errors.Is(err, pgx.ErrNoRows):
		return st, nil
	case err != nil:
		return st, fmt.Errorf("read pause from ledger %s: %w", p.name, err)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("read pause from ledger %s: %w", p.name, err)
	}
	return st, nil
}
