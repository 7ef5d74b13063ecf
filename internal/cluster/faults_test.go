package cluster_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/fleetd/fleetd/internal/cluster"
	"github.com/fleetd/fleetd/internal/pgtest"
)

// The fleet-wide storm ratio across replicas: each publishes the counts of
// the slots it holds and reads the sum over all slots. A replica's counts
// for locations it does not hold are ignored, and a slot that moves is
// counted once, with its new holder's numbers.
func TestFleetCountsAddUpOverReplicas(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	const slots = 8
	a, b := join(t, dsn, "a", slots), join(t, dsn, "b", slots)
	tick(t, a, b)
	tick(t, a, b)
	ctx := context.Background()
	// 16 locations of 10 devices; location i has i faulty devices.
	counts := func(r replica) map[string]cluster.Count {
		out := map[string]cluster.Count{}
		for i := range 16 {
			id := fmt.Sprintf("loc-%d", i)
			if r.Walks(id) {
				out[id] = cluster.Count{Devices: 10, Faulty: i}
			}
		}
		return out
	}
	all := func(r replica) map[string]cluster.Count { // as if it walked everything
		out := map[string]cluster.Count{}
		for i := range 16 {
			out[fmt.Sprintf("loc-%d", i)] = cluster.Count{Devices: 10, Faulty: i}
		}
		return out
	}
	want := cluster.Count{Devices: 160, Faulty: 120}
	if _, err := a.FleetCounts(ctx, all(a)); err != nil { // a's extra locations must not count
		t.Fatal(err)
	}
	got, err := b.FleetCounts(ctx, counts(b))
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("fleet counts = %+v, want %+v", got, want)
	}
	// b leaves; a takes every slot and publishes them: still counted once.
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	tick(t, a)
	if got, err := a.FleetCounts(ctx, counts(a)); err != nil || got != want {
		t.Fatalf("after b left: %+v, %v; want %+v", got, err, want)
	}
}
