package storetest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/remediate/policy"
	"github.com/fleetd/fleetd/internal/remediate/store"
)

// parallel runs n reservations at once and returns the accepted ones and
// the refusals by reason.
func parallel(t *testing.T, s store.Store, n int, r func(i int) store.Reservation) ([]store.Reserved, map[string]int) {
	t.Helper()
	var (
		mu       sync.Mutex
		accepted []store.Reserved
		refused  = map[string]int{}
		wg       sync.WaitGroup
		start    = make(chan struct{})
	)
	for i := range n {
		wg.Go(func() {
			<-start
			got, err := s.Reserve(context.Background(), r(i))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Errorf("Reserve %d: %v", i, err)
			case got.Refused == "":
				accepted = append(accepted, got)
			default:
				refused[got.Refused]++
			}
		})
	}
	close(start)
	wg.Wait()
	return accepted, refused
}

func inFlight(t *testing.T, s store.Store) int {
	n := 0
	for _, c := range load(t, s).Commands {
		if c.InFlight() {
			n++
		}
	}
	return n
}

func testParallelCap(t *testing.T, newLedger func(t *testing.T) Opener) {
	s := opened(t, newLedger(t))
	const n = 40
	accepted, refused := parallel(t, s, n, func(i int) store.Reservation { return reservation(fmt.Sprintf("d%d", i), t0) })
	if len(accepted) != limits.MaxInFlight || refused[policy.ReasonMaxInFlight] != n-limits.MaxInFlight {
		t.Fatalf("%d accepted, refusals %v; want %d accepted, the rest max_in_flight", len(accepted), refused, limits.MaxInFlight)
	}
	if got := inFlight(t, s); got != limits.MaxInFlight {
		t.Fatalf("%d commands in flight in the ledger, want %d", got, limits.MaxInFlight)
	}
}

func testParallelDevice(t *testing.T, newLedger func(t *testing.T) Opener) {
	s := opened(t, newLedger(t))
	const n = 20
	accepted, refused := parallel(t, s, n, func(int) store.Reservation { return reservation("d1", t0) })
	if len(accepted) != 1 || refused[policy.ReasonInFlight] != n-1 {
		t.Fatalf("%d accepted, refusals %v; want 1 accepted, the rest in_flight", len(accepted), refused)
	}
	if st := load(t, s); len(st.Commands) != 1 || len(st.Episodes) != 1 || st.Episodes[0].Attempts != 1 {
		t.Fatalf("ledger after parallel reserves of one device: %+v", st)
	}
}

// testParallelAttempts: workers race to reserve and finish attempts of
// one episode, with no cooldown; the episode never gets more than
// max_attempts attempts.
func testParallelAttempts(t *testing.T, newLedger func(t *testing.T) Opener) {
	s := opened(t, newLedger(t))
	l := limits
	l.Cooldown = 0
	var (
		sent atomic.Int64
		wg   sync.WaitGroup
		tick atomic.Int64
	)
	for range 8 {
		wg.Go(func() {
			for range 50 {
				r := reservation("d1", t0.Add(time.Duration(tick.Add(1))))
				r.Limits = l
				got, err := s.Reserve(context.Background(), r)
				if err != nil {
					t.Errorf("Reserve: %v", err)
					return
				}
				switch got.Refused {
				case "":
					sent.Add(1)
					finish(t, s, got.Command, r.Now)
				case policy.ReasonExhausted:
					return
				}
			}
		})
	}
	wg.Wait()
	if n := sent.Load(); n != int64(l.MaxAttempts) {
		t.Fatalf("%d attempts recorded for one episode, want max_attempts %d", n, l.MaxAttempts)
	}
	if st := load(t, s); len(st.Episodes) != 1 || st.Episodes[0].Attempts != l.MaxAttempts || len(st.Commands) != l.MaxAttempts {
		t.Fatalf("ledger: %+v", st)
	}
}

// testDurability: what was written is there after closing and reopening,
// and the reopened ledger still refuses what it refused before.
func testDurability(t *testing.T, newLedger func(t *testing.T) Opener) {
	open := newLedger(t)
	s := open(t)
	want := fullState()
	if err := s.Apply(context.Background(), putAll(want)...); err != nil {
		t.Fatal(err)
	}
	got := reserve(t, s, reservation("d2", t0))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = opened(t, open)
	st := load(t, s)
	if len(st.Commands) != 2 || len(st.Episodes) != 2 || len(st.Devices) != 2 || !st.Pause.Paused || len(st.Storms) != 2 {
		t.Fatalf("after reopening: %+v", st)
	}
	var found bool
	for _, c := range st.Commands {
		found = found || c == got.Command
	}
	if !found {
		t.Fatalf("the reserved command %+v is not in the reopened ledger %+v", got.Command, st.Commands)
	}
	if r := reserve(t, s, reservation("d2", t0.Add(time.Hour))); r.Refused != policy.ReasonInFlight {
		t.Fatalf("after reopening, a device with a command in flight: %+v", r)
	}
}
