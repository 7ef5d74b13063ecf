package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/fleetd/fleetd/internal/cluster"
	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/pgdb"
	"github.com/fleetd/fleetd/internal/remediate"
	"github.com/fleetd/fleetd/internal/remediate/store"
	"github.com/fleetd/fleetd/internal/scrape"
	"github.com/fleetd/fleetd/internal/web/status"
)

// openTimeout bounds connecting to and migrating the PostgreSQL ledger at
// start-up.
const openTimeout = 30 * time.Second

// pruneEvery is how often the ledger's command history is pruned to
// remediation.history_retention.
const pruneEvery = time.Hour

// replication is what a PostgreSQL ledger adds to a daemon: the shared
// ledger and, with a cluster section, the slot leases that split the
// locations among replicas. A nil *replication is a bbolt ledger; every
// method works on it.
type replication struct {
	log       *slog.Logger
	pool      *pgxpool.Pool
	ledger    *store.Postgres
	member    *cluster.Membership // nil without a cluster section
	retention time.Duration
}

// openReplication connects to the PostgreSQL ledger of cfg (nil, nil for a
// bbolt ledger), migrates it and joins the cluster. Messages name the
// database by its redacted DSN only.
func openReplication(cfg *config.Config, reg prometheus.Registerer, log *slog.Logger) (*replication, error) {
	r := &cfg.Remediation
	if !r.LedgerIsPostgres() {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	pool, err := pgdb.Open(ctx, r.Ledger, r.LedgerPassword())
	if err != nil {
		return nil, fmt.Errorf("remediation ledger: %w", err)
	}
	rp := &replication{log: log.With("component", "cluster"), pool: pool, retention: r.HistoryRetention}
	replica := ""
	if c := cfg.Cluster; c != nil {
		replica = c.ReplicaID
		if replica == "" {
			if replica, err = os.Hostname(); err != nil {
				pool.Close()
				return nil, fmt.Errorf("cluster.replica_id: not set and no hostname: %w", err)
			}
		}
		rp.member, err = cluster.New(ctx, pool, cluster.Config{
			Slots: c.Slots, LeaseTTL: c.LeaseTTL, RenewEvery: c.RenewEvery, ReplicaID: replica,
			SendTimeout: cfg.Bikeep.RequestTimeout,
		}, reg, rp.log)
		if err != nil {
			pool.Close()
			return nil, err
		}
	}
	var fence store.Fencer
	if rp.member != nil {
		fence = rp.member
	}
	rp.ledger = store.NewPostgres(pool, pgdb.Redact(r.Ledger), replica, fence)
	rp.setPolicy(cfg.Remediation)
	log.Info("remediation ledger in PostgreSQL", "ledger", pgdb.Redact(r.Ledger), "replica_id", replica, "cluster", rp.member != nil)
	return rp, nil
}

// setPolicy shares remediation.rate through the database: the bucket holds
// for the fleet, not for each replica (each engine keeps its own bucket
// too, so a replica alone never exceeds it either). Its depth is the
// engine's: one period's worth, at most max_in_flight.
func (r *replication) setPolicy(p config.Remediation) {
	if r == nil {
		return
	}
	r.ledger.SetRate(store.Rate{PerSecond: float64(p.Rate.Limit()), Burst: max(1, min(p.Rate.Count, p.MaxInFlight))})
}

// openLedger returns the ledger of cfg: the shared PostgreSQL one, or the
// bbolt file.
func (r *replication) openLedger(cfg *config.Config) (store.Store, error) {
	if r != nil {
		return r.ledger, nil
	}
	return remediate.OpenLedger(cfg.Remediation.Ledger)
}

// owns is the location filter of the scraper and the engine: the slots
// this replica holds; nil (everything) without a cluster.
func (r *replication) owns() func(string) bool {
	if r == nil || r.member == nil {
		return nil
	}
	return r.member.Walks
}

// fleet shares the fleet-wide storm ratio through the database; nil
// without a cluster.
func (r *replication) fleet() remediate.FleetCounter {
	if r == nil || r.member == nil {
		return nil
	}
	return r.member
}

// maySend is the engine's last check before a POST: the location's lease
// is still valid by the local clock; nil without a cluster.
func (r *replication) maySend() func(string) bool {
	if r == nil || r.member == nil {
		return nil
	}
	return r.member.StillHolds
}

// scrapeOptions limits the walks to the owned locations.
func (r *replication) scrapeOptions(o *scrape.Options) { o.Owns = r.owns() }

// exportsCopri is the exporter's copri_* filter; nil reports them.
func (r *replication) exportsCopri() func() bool {
	if r == nil || r.member == nil {
		return nil
	}
	return r.member.ExportsCopri
}

// start runs the lease renewals, the engine's resync on slot changes and
// the history pruning under g; close, after g ends, closes the pool.
func (r *replication) start(ctx context.Context, g *errgroup.Group, engine *remediate.Engine) {
	if r == nil {
		return
	}
	g.Go(func() error { r.prune(ctx); return nil })
	if r.member == nil {
		return
	}
	g.Go(func() error { return r.member.Run(ctx) })
	if engine != nil {
		g.Go(func() error { r.follow(ctx, engine); return nil })
	}
}

func (r *replication) close() {
	if r != nil {
		r.pool.Close()
	}
}

// resyncEvery bounds how long the engine's memory and the ledger may
// disagree about its own locations after a write on a broken connection: a
// write-ahead record committed although the engine saw an error (nothing
// was sent) is released after its cooldown, and a command end the ledger
// missed is written again. Either would otherwise block its device for good.
const resyncEvery = 15 * time.Second

// follow hands the engine the locations of every slot this replica gains
// (and takes back those it loses) by resyncing it from the ledger whenever
// the held slots change, and every resyncEvery. A failed resync is retried
// on the next check.
func (r *replication) follow(ctx context.Context, engine *remediate.Engine) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var (
		synced []int
		last   time.Time
	)
	for {
		held := heldSlots(r.member.Status())
		if !slices.Equal(held, synced) || time.Since(last) >= resyncEvery {
			if err := engine.Resync(ctx); err != nil {
				if ctx.Err() == nil {
					r.log.Warn("taking over the remediation state of new slots failed; retrying", "err", err)
				}
			} else {
				synced, last = held, time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func heldSlots(s cluster.Status) []int {
	m := map[int]bool{}
	for _, l := range s.Held {
		m[l.Slot] = true
	}
	return slices.Sorted(maps.Keys(m))
}

// prune deletes command history older than remediation.history_retention,
// at start and every pruneEvery.
func (r *replication) prune(ctx context.Context) {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		if n, err := r.ledger.Prune(ctx, r.retention); err != nil && ctx.Err() == nil {
			r.log.Warn("pruning the remediation history failed", "err", err)
		} else if n > 0 {
			r.log.Info("remediation history pruned", "rows", n, "retention", r.retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// status is the cluster section of the status page; nil without a cluster.
func (r *replication) status() *status.Cluster {
	if r == nil || r.member == nil {
		return nil
	}
	s := r.member.Status()
	out := &status.Cluster{ReplicaID: s.ReplicaID, Replicas: s.Replicas, Slots: s.Slots, Degraded: s.Degraded}
	for _, l := range s.Held {
		if l.Slot == cluster.CopriSlot {
			out.Copri = true
			continue
		}
		out.Held = append(out.Held, status.Lease{Slot: l.Slot, Epoch: l.Epoch})
	}
	return out
}

// checkClusterReload refuses a reload that changes the cluster section:
// leases, slots and the replica's identity are set up once, at start.
func checkClusterReload(old, next *config.Config) error {
	if (old.Cluster == nil) != (next.Cluster == nil) || (old.Cluster != nil && *old.Cluster != *next.Cluster) {
		return errors.New("cluster: changing the cluster section needs a restart")
	}
	if old.Remediation.LedgerPasswordFile != next.Remediation.LedgerPasswordFile {
		return errors.New("remediation.ledger_password_file: changing it needs a restart")
	}
	return nil
}
