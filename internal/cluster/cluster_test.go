package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetd/fleetd/internal/cluster"
	"github.com/fleetd/fleetd/internal/pgdb"
	"github.com/fleetd/fleetd/internal/pgtest"
)

const (
	ttl   = 2 * time.Second
	renew = 500 * time.Millisecond
)

type replica struct {
	*cluster.Membership
	reg *prometheus.Registry
}

func open(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := pgdb.Open(ctx, dsn, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func join(t *testing.T, dsn, id string, slots int) replica {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := cluster.New(context.Background(), open(t, dsn), cluster.Config{
		Slots: slots, LeaseTTL: ttl, RenewEvery: renew, ReplicaID: id, SendTimeout: 500 * time.Millisecond,
	}, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return replica{m, reg}
}

func tick(t *testing.T, rs ...replica) {
	t.Helper()
	for _, r := range rs {
		if err := r.Tick(context.Background()); err != nil {
			t.Fatalf("%s: tick: %v", r.Status().ReplicaID, err)
		}
	}
}

// settle ticks every replica until the holdings stop changing.
func settle(t *testing.T, rs ...replica) {
	t.Helper()
	prev := ""
	for range 20 {
		tick(t, rs...)
		var b strings.Builder
		for _, r := range rs {
			for _, l := range r.Status().Held {
				fmt.Fprint(&b, l.Slot, " ")
			}
			b.WriteString("|")
		}
		if b.String() == prev {
			return
		}
		prev = b.String()
	}
	t.Fatal("holdings never settled")
}

func holdings(rs ...replica) map[int]string {
	owner := map[int]string{}
	for _, r := range rs {
		for _, l := range r.Status().Held {
			owner[l.Slot] = r.Status().ReplicaID
		}
	}
	return owner
}

// checkBalanced: every slot held by exactly one replica, none over its fair
// share, the COPRI slot held once.
func checkBalanced(t *testing.T, slots int, rs ...replica) {
	t.Helper()
	share := int(math.Ceil(float64(slots) / float64(len(rs))))
	seen := map[int]string{}
	copri := 0
	for _, r := range rs {
		st := r.Status()
		n := 0
		for _, l := range st.Held {
			if prev, dup := seen[l.Slot]; dup {
				t.Fatalf("slot %d held by %s and %s", l.Slot, prev, st.ReplicaID)
			}
			seen[l.Slot] = st.ReplicaID
			if l.Slot == cluster.CopriSlot {
				copri++
			} else {
				n++
			}
		}
		if n > share {
			t.Fatalf("%s holds %d slots, over the fair share %d", st.ReplicaID, n, share)
		}
	}
	if len(seen) != slots+1 || copri != 1 {
		t.Fatalf("%d of %d slots held, COPRI slot held %d times", len(seen), slots+1, copri)
	}
}

func TestSlotsSpreadEvenlyAndMoveLittle(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	const slots = 64
	a, b := join(t, dsn, "a", slots), join(t, dsn, "b", slots)
	settle(t, a, b)
	checkBalanced(t, slots, a, b)

	before := holdings(a, b)
	x := join(t, dsn, "c", slots)
	settle(t, a, b, x)
	checkBalanced(t, slots, a, b, x)
	moved := 0
	for slot, owner := range holdings(a, b, x) {
		if before[slot] != owner {
			moved++
		}
	}
	// A third replica takes its share (≤ ⌈64/3⌉ = 22) and nothing else moves.
	if moved > 22 {
		t.Fatalf("%d slots moved when a third replica joined; at most 22 should", moved)
	}
	if got := value(t, x.reg, "fleetd_cluster_replicas"); got != 3 {
		t.Fatalf("fleetd_cluster_replicas = %v, want 3", got)
	}

	// A replica leaving cleanly hands its slots over at once.
	if err := x.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	settle(t, a, b)
	checkBalanced(t, slots, a, b)
}

func TestACrashedReplicasSlotsAreTakenOverAfterTheTTL(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	a, b := join(t, dsn, "a", 8), join(t, dsn, "b", 8)
	settle(t, a, b)
	// b stops ticking (kill -9): until its leases expire nobody may take them.
	tick(t, a)
	if n := len(a.Status().Held); n > 5 {
		t.Fatalf("a took %d slots while b's leases were live", n)
	}
	deadline := time.Now().Add(ttl + 3*renew)
	for time.Now().Before(deadline) && len(holdings(a)) < 9 {
		time.Sleep(renew)
		tick(t, a)
	}
	if n := len(holdings(a)); n != 9 {
		t.Fatalf("a holds %d of 9 slots %s after b stopped", n, ttl+3*renew)
	}
}

func TestFencingStopsAReplicaThatLostItsSlot(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	pool := open(t, dsn)
	a := join(t, dsn, "a", 1)
	tick(t, a)
	lease, ok := a.Remediates("any-location")
	if !ok {
		t.Fatal("a holds the only slot but may not remediate")
	}
	if !a.StillHolds("any-location") {
		t.Fatal("a holds the only slot but StillHolds says no")
	}
	fence := func(r replica, l cluster.Lease) error {
		return pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error { return r.FenceLease(context.Background(), tx, l) })
	}
	if err := fence(a, lease); err != nil {
		t.Fatalf("fence with a current lease: %v", err)
	}

	// a is paused (SIGSTOP) past the TTL; b takes the slot over.
	time.Sleep(ttl + 100*time.Millisecond)
	if _, ok := a.Remediates("any-location"); ok {
		t.Fatal("a may still remediate after its lease ran out by its own clock")
	}
	if a.StillHolds("any-location") {
		t.Fatal("a would still POST after its lease ran out by its own clock")
	}
	b := join(t, dsn, "b", 1)
	tick(t, b)
	lb, ok := b.Remediates("any-location")
	if !ok || lb.Epoch <= lease.Epoch {
		t.Fatalf("b did not take the slot over with a newer epoch: %+v (a had %d)", lb, lease.Epoch)
	}
	// a wakes up with its stale view: the database refuses it.
	if err := fence(a, lease); !errors.Is(err, cluster.ErrFenced) {
		t.Fatalf("fence with a lost lease = %v, want ErrFenced", err)
	}
	// and its next renewal gives the slot up.
	tick(t, a)
	if a.Walks("any-location") {
		t.Fatal("a still walks a slot it lost")
	}
	if err := fence(b, lb); err != nil {
		t.Fatalf("the new owner is fenced: %v", err)
	}
}

func TestLosingTheDatabaseStopsRemediationButNotMonitoring(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	a := join(t, dsn, "a", 4)
	tick(t, a)
	c.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Tick(ctx); err == nil {
		t.Fatal("tick succeeded with the database down")
	}
	if !a.Degraded() || !a.Walks("loc-1") {
		t.Fatalf("with the database down: degraded=%v walks=%v; want degraded and still walking", a.Degraded(), a.Walks("loc-1"))
	}
	if _, ok := a.Remediates("loc-1"); ok {
		t.Fatal("remediation allowed with the database down")
	}
	if got := value(t, a.reg, "fleetd_cluster_degraded"); got != 1 {
		t.Fatalf("fleetd_cluster_degraded = %v", got)
	}
	c.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for err := a.Tick(context.Background()); err != nil && time.Now().Before(deadline); err = a.Tick(context.Background()) {
		t.Logf("tick: %v", err)
		time.Sleep(renew)
	}
	if a.Degraded() {
		t.Fatal("still degraded after the database came back")
	}
	if _, ok := a.Remediates("loc-1"); !ok {
		t.Fatal("remediation not resumed after the database came back")
	}
}

func TestASlotCountMismatchIsRefused(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	join(t, dsn, "a", 64)
	_, err := cluster.New(context.Background(), open(t, dsn), cluster.Config{
		Slots: 32, LeaseTTL: ttl, RenewEvery: renew, ReplicaID: "b",
	}, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "64") {
		t.Fatalf("New with another slot count = %v", err)
	}
}

func TestSlotOfIsStable(t *testing.T) {
	// Changing the hash would move every location at once on upgrade.
	for id, want := range map[string]int{"loc-0001": 35, "0f6c2d1e-6c7a-4f0b-9a59-0d2f4b1a2c3d": 57, "": 5} {
		if got := cluster.SlotOf(id, 64); got != want {
			t.Errorf("SlotOf(%q, 64) = %d, want %d", id, got, want)
		}
	}
}

// value reads an unlabelled gauge or counter from reg.
func value(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.Gauge != nil {
				return m.Gauge.GetValue()
			}
			return m.Counter.GetValue()
		}
	}
	t.Fatalf("%s not registered", name)
	return 0
}
