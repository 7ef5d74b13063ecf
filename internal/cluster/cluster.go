// Package cluster shares the fleet among fleetd replicas through slot leases
// in PostgreSQL. Every location belongs to one of a fixed number of slots by a
// stable hash of its id; each slot has one lease row (holder, epoch,
// expires_at). A replica renews the leases it holds every renew_every, gives
// up what it holds beyond its fair share ⌈slots / live replicas⌉ and takes
// free or expired slots up to it, so the slots spread evenly and move as
// little as possible when a replica joins or leaves.
//
// Time is the database's: expires_at is always now() + lease_ttl on the
// server, never a replica's clock. Locally a replica only ever shortens its
// view: a lease counts as held until the moment its last renewal was *sent*
// plus lease_ttl, which is never later than the server's expiry.
//
// Fencing: epoch grows every time a slot changes hands. A remediation
// attempt is recorded in a transaction that first locks the slot's lease row
// and checks holder, epoch and remaining time (Fence); a replica that was
// paused or partitioned and lost its slot therefore cannot record — and so
// cannot send — anything for it, whatever its local state says.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// CopriSlot is the dedicated slot whose holder exports the copri_* series,
// so that operators' rentals are reported once across replicas.
const CopriSlot = -1

// Config sets up a replica's membership.
type Config struct {
	// Slots is the number of location slots; every replica must agree.
	Slots      int
	LeaseTTL   time.Duration
	RenewEvery time.Duration
	ReplicaID  string
	// SendTimeout is how much lease time must remain for Fence to pass: a
	// command must be sent (or known to have failed) before the lease could
	// pass to another replica.
	SendTimeout time.Duration
	// Now is the local monotonic clock; time.Now when nil. Used only to
	// shorten the local view of a lease, never to compute an expiry.
	Now func() time.Time
}

func (c *Config) check() error {
	var errs []error
	if c.Slots < 1 || c.Slots > 4096 {
		errs = append(errs, fmt.Errorf("slots must be between 1 and 4096, got %d", c.Slots))
	}
	if c.LeaseTTL <= 0 || c.RenewEvery <= 0 || c.RenewEvery*2 > c.LeaseTTL {
		errs = append(errs, fmt.Errorf("renew_every (%s) must be positive and at most half of lease_ttl (%s)", c.RenewEvery, c.LeaseTTL))
	}
	if c.SendTimeout < 0 || c.SendTimeout >= c.LeaseTTL {
		errs = append(errs, fmt.Errorf("the send timeout (%s) must be shorter than lease_ttl (%s)", c.SendTimeout, c.LeaseTTL))
	}
	if c.ReplicaID == "" || len(c.ReplicaID) > 128 {
		errs = append(errs, errors.New("replica_id must be 1 to 128 bytes"))
	}
	return errors.Join(errs...)
}

// SlotOf returns the slot of a location: FNV-1a of its id modulo slots.
// Stable across versions and replicas — changing it would move every
// location at once.
func SlotOf(locationID string, slots int) int {
	h := fnv.New32a()
	h.Write([]byte(locationID))
	return int(h.Sum32() % uint32(slots))
}

// Lease is a slot this replica holds.
type Lease struct {
	Slot  int
	Epoch int64
	// validUntil is the local deadline: when the renewal that confirmed the
	// lease was sent, plus lease_ttl.
	validUntil time.Time
}

// ErrFenced is returned by Fence when this replica no longer holds the slot
// under the given epoch, or the lease has too little time left.
var ErrFenced = errors.New("cluster: slot lease lost or about to expire")

// Membership is one replica's view of the slot leases.
type Membership struct {
	pool *pgxpool.Pool
	cfg  Config
	log  *slog.Logger
	m    *metrics

	mu       sync.Mutex
	held     map[int]Lease
	replicas int
	// healthy is false from a failed renewal until the next successful one:
	// remediation stops at once, monitoring of the held slots goes on.
	healthy bool
}

// New prepares the lease rows (idempotent) and returns a Membership that
// holds nothing until its first Tick. A database set up with another slot
// count is refused: the hash would send locations to different slots on
// different replicas.
func New(ctx context.Context, pool *pgxpool.Pool, cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Membership, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if err := initSlots(ctx, pool, cfg.Slots); err != nil {
		return nil, err
	}
	m := &Membership{pool: pool, cfg: cfg, log: log, held: map[int]Lease{}, m: newMetrics(cfg.Slots)}
	if err := m.m.register(reg); err != nil {
		return nil, err
	}
	return m, nil
}

func initSlots(ctx context.Context, pool *pgxpool.Pool, slots int) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO cluster_settings (key, value) VALUES ('slots', $1) ON CONFLICT DO NOTHING`, strconv.Itoa(slots)); err != nil {
			return fmt.Errorf("cluster: record slot count: %w", err)
		}
		var have string
		if err := tx.QueryRow(ctx, `SELECT value FROM cluster_settings WHERE key = 'slots'`).Scan(&have); err != nil {
			return fmt.Errorf("cluster: read slot count: %w", err)
		}
		if have != strconv.Itoa(slots) {
			return fmt.Errorf("cluster: cluster.slots is %d here but the database was set up with %s slots; every replica must use the same value (to change it, stop all replicas and delete the cluster_settings row 'slots' and the cluster_leases rows)", slots, have)
		}
		_, err := tx.Exec(ctx, `INSERT INTO cluster_leases (slot) SELECT generate_series($1::int, $2::int) ON CONFLICT DO NOTHING`, CopriSlot, slots-1)
		if err != nil {
			return fmt.Errorf("cluster: create lease rows: %w", err)
		}
		return nil
	})
}

// Run ticks every renew_every until ctx ends, then releases the leases so
// that the other replicas take over without waiting for them to expire.
func (m *Membership) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.RenewEvery)
	defer t.Stop()
	for {
		if err := m.Tick(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("cluster lease renewal failed; remediation stopped until it succeeds", "err", err)
		}
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.RenewEvery)
			defer cancel()
			return m.Release(rctx)
		case <-t.C:
		}
	}
}

// Tick is one round: heartbeat, renew, shed what is over the fair share,
// acquire up to it, and take the COPRI slot when it is free.
func (m *Membership) Tick(ctx context.Context) error {
	sent := m.cfg.Now()
	held, replicas, err := m.round(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.healthy = false
		m.m.renewFailures.Inc()
		m.m.degraded.Set(1)
		return err
	}
	for slot := range m.held {
		if _, ok := held[slot]; !ok {
			m.log.Info("cluster slot given up or lost", "slot", slot)
		}
	}
	for slot, l := range held {
		if _, ok := m.held[slot]; !ok {
			m.log.Info("cluster slot acquired", "slot", slot, "epoch", l.Epoch)
		}
		l.validUntil = sent.Add(m.cfg.LeaseTTL)
		held[slot] = l
	}
	m.held, m.replicas, m.healthy = held, replicas, true
	m.m.set(held, replicas)
	return nil
}

func (m *Membership) round(ctx context.Context) (map[int]Lease, int, error) {
	ttl := m.cfg.LeaseTTL
	me := m.cfg.ReplicaID
	if _, err := m.pool.Exec(ctx, `INSERT INTO cluster_replicas (replica_id, expires_at) VALUES ($1, now() + $2::interval)
		ON CONFLICT (replica_id) DO UPDATE SET expires_at = EXCLUDED.expires_at`, me, ttl); err != nil {
		return nil, 0, fmt.Errorf("heartbeat: %w", err)
	}
	var replicas int
	if err := m.pool.QueryRow(ctx, `SELECT count(*) FROM cluster_replicas WHERE expires_at > now()`).Scan(&replicas); err != nil {
		return nil, 0, fmt.Errorf("count replicas: %w", err)
	}
	held, err := m.collect(ctx, `UPDATE cluster_leases SET expires_at = now() + $2::interval
		WHERE holder = $1 AND expires_at > now() RETURNING slot, epoch`, me, ttl)
	if err != nil {
		return nil, 0, fmt.Errorf("renew: %w", err)
	}
	share := int(math.Ceil(float64(m.cfg.Slots) / float64(max(replicas, 1))))
	locations := slices.DeleteFunc(slices.Sorted(maps.Keys(held)), func(s int) bool { return s == CopriSlot })
	if extra := len(locations) - share; extra > 0 {
		shed := locations[len(locations)-extra:]
		if _, err := m.pool.Exec(ctx, `UPDATE cluster_leases SET holder = '', expires_at = now(), changed_at = now()
			WHERE holder = $1 AND slot = ANY($2)`, me, shed); err != nil {
			return nil, 0, fmt.Errorf("release: %w", err)
		}
		for _, s := range shed {
			delete(held, s)
		}
	} else if extra < 0 {
		got, err := m.collect(ctx, `UPDATE cluster_leases SET holder = $1, epoch = epoch + 1,
			expires_at = now() + $2::interval, changed_at = now()
			WHERE expires_at <= now() AND slot IN (
				SELECT slot FROM cluster_leases WHERE slot >= 0 AND expires_at <= now()
				ORDER BY slot LIMIT $3 FOR UPDATE SKIP LOCKED)
			RETURNING slot, epoch`, me, ttl, -extra)
		if err != nil {
			return nil, 0, fmt.Errorf("acquire: %w", err)
		}
		maps.Copy(held, got)
	}
	if _, ok := held[CopriSlot]; !ok {
		got, err := m.collect(ctx, `UPDATE cluster_leases SET holder = $1, epoch = epoch + 1,
			expires_at = now() + $2::interval, changed_at = now()
			WHERE slot = $3 AND expires_at <= now() RETURNING slot, epoch`, me, ttl, CopriSlot)
		if err != nil {
			return nil, 0, fmt.Errorf("acquire copri slot: %w", err)
		}
		maps.Copy(held, got)
	}
	// Forget replicas gone for long; their leases expired on their own.
	if _, err := m.pool.Exec(ctx, `DELETE FROM cluster_replicas WHERE expires_at < now() - interval '1 hour'`); err != nil {
		return nil, 0, fmt.Errorf("forget departed replicas: %w", err)
	}
	return held, replicas, nil
}

func (m *Membership) collect(ctx context.Context, sql string, args ...any) (map[int]Lease, error) {
	rows, err := m.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	out := map[int]Lease{}
	var l Lease
	_, err = pgx.ForEachRow(rows, []any{&l.Slot, &l.Epoch}, func() error {
		out[l.Slot] = Lease{Slot: l.Slot, Epoch: l.Epoch}
		return nil
	})
	return out, err
}

// Release gives up every lease this replica holds (on shutdown).
func (m *Membership) Release(ctx context.Context) error {
	_, err := m.pool.Exec(ctx, `UPDATE cluster_leases SET holder = '', expires_at = now(), changed_at = now() WHERE holder = $1`, m.cfg.ReplicaID)
	if err == nil {
		_, err = m.pool.Exec(ctx, `DELETE FROM cluster_replicas WHERE replica_id = $1`, m.cfg.ReplicaID)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.held, m.healthy = map[int]Lease{}, false
	m.m.set(m.held, m.replicas)
	if err != nil {
		return fmt.Errorf("cluster: release leases: %w", err)
	}
	return nil
}

// Walks reports whether this replica walks and exports the location: it held
// the location's slot at its last successful renewal. When the database is
// lost the replica keeps walking what it held (reporting itself degraded),
// so monitoring goes on; remediation does not (Remediates).
func (m *Membership) Walks(locationID string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.held[SlotOf(locationID, m.cfg.Slots)]
	return ok
}

// ExportsCopri reports whether this replica holds the COPRI slot.
func (m *Membership) ExportsCopri() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.held[CopriSlot]
	return ok
}

// Remediates returns the lease under which a command for the location may be
// recorded: only while the last renewal succeeded and the lease is still
// valid by the local clock (with SendTimeout to spare). The recording
// transaction must still call Fence: the local view can be stale.
func (m *Membership) Remediates(locationID string) (Lease, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.held[SlotOf(locationID, m.cfg.Slots)]
	if !ok || !m.healthy || !m.cfg.Now().Add(m.cfg.SendTimeout).Before(l.validUntil) {
		return Lease{}, false
	}
	return l, true
}

// StillHolds reports whether the lease of the location's slot is still
// valid by the local clock: the check right before a POST whose attempt
// Fence let through. Unlike Remediates it wants no time to spare and
// ignores a renewal that failed since: the lease the attempt was fenced
// under is what matters, and only a lease that ran out (a replica frozen
// after the commit) must stop the POST.
func (m *Membership) StillHolds(locationID string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.held[SlotOf(locationID, m.cfg.Slots)]
	return ok && m.cfg.Now().Before(l.validUntil)
}

// Degraded reports whether the last renewal failed.
func (m *Membership) Degraded() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.healthy
}

// Status is what the status page shows of the cluster.
type Status struct {
	ReplicaID string
	Replicas  int
	Slots     int
	Held      []Lease
	Degraded  bool
}

// Status returns a copy of the current view.
func (m *Membership) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	held := slices.SortedFunc(maps.Values(m.held), func(a, b Lease) int { return a.Slot - b.Slot })
	return Status{ReplicaID: m.cfg.ReplicaID, Replicas: m.replicas, Slots: m.cfg.Slots, Held: held, Degraded: !m.healthy}
}

// Fence is called inside the transaction that records an attempt for a
// location: it fails with ErrFenced unless this replica may remediate the
// location (Remediates) and the database agrees that it still holds the
// slot under the same epoch with more than SendTimeout left. The lease row
// stays locked until tx ends, so the slot cannot change hands between this
// check and the commit.
func (m *Membership) Fence(ctx context.Context, tx pgx.Tx, locationID string) error {
	l, ok := m.Remediates(locationID)
	if !ok {
		return fmt.Errorf("%w (slot %d not held, or renewal failing)", ErrFenced, SlotOf(locationID, m.cfg.Slots))
	}
	return m.fenceLease(ctx, tx, l)
}

func (m *Membership) fenceLease(ctx context.Context, tx pgx.Tx, l Lease) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM cluster_leases
		WHERE slot = $1 AND holder = $2 AND epoch = $3 AND expires_at > now() + $4::interval
		FOR UPDATE`, l.Slot, m.cfg.ReplicaID, l.Epoch, m.cfg.SendTimeout).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w (slot %d, epoch %d)", ErrFenced, l.Slot, l.Epoch)
	}
	if err != nil {
		return fmt.Errorf("cluster: fence slot %d: %w", l.Slot, err)
	}
	return nil
}
