package remediate

import (
	"bytes"
	"context"
	"fmt"
	"github.com/fleetd/fleetd/internal/realprog"
	"os/exec"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/scrape"
)

// BenchmarkDecisionPass: one Observe over 2,000 locations × 50 devices with
// 5 % faulty devices (mixed kinds) and a realistic ledger: a third of the
// faulty devices in cooldown, a sixth exhausted, a third too young; the
// rest meet an empty token bucket.
func BenchmarkDecisionPass(b *testing.B) {
	p := testPolicy(b.TempDir())
	clock := newClock()
	l, err := OpenLedger(p.Ledger)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	e, err := New(Options{Policy: p, Commander: newCommander(clock.Now), Ledger: l, Registerer: prometheus.NewRegistry(), Now: clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	now := t0
	snap := &scrape.Snapshot{Taken: now, Sources: []scrape.SourceStatus{{Name: scrape.SourceBikeep, Up: true, LastSuccess: now, LastDuration: time.Second}}}
	kinds := []health.FaultKind{health.Unhealthy, health.HardwareError, health.NotResponding, health.StuckTransition, health.LockMismatch, health.Dead}
	for li := range 2000 {
		loc := scrape.LocationStatus{ID: fmt.Sprintf("loc-%04d", li), Up: true, LastSuccess: now}
		for di := range 50 {
			d := device(fmt.Sprintf("%s-dev-%02d", loc.ID, di), loc.ID)
			loc.Devices = append(loc.Devices, d.Record())
			if n := li*50 + di; n%20 == 0 { // 5 %
				k := kinds[(n/20)%len(kinds)]
				f := health.Fault{Kind: k, DeviceID: d.ID, Alias: d.Alias, LocationID: loc.ID, DeviceType: d.Type,
					Recoverable: k.RecoverableKind(), FirstSeen: now.Add(-time.Hour), Since: now.Add(-time.Hour), Walks: 100}
				switch (n / 20) % 6 {
				case 0, 1: // cooldown
					e.devices[d.ID] = now.Add(-time.Minute)
				case 2: // exhausted
					e.episodes[faultKey{d.ID, k}] = &episodeRecord{DeviceID: d.ID, Alias: d.Alias,
						LocationID: loc.ID, Fault: k, FirstSeen: f.FirstSeen, Attempts: p.MaxAttempts, LastAttempt: now.Add(-time.Hour)}
				case 3, 4: // too young
					f.Walks = 1
				}
				snap.Faults = append(snap.Faults, f)
			}
		}
		snap.Locations = append(snap.Locations, loc)
	}
	e.limiter.AllowN(now, e.limiter.Burst()) // the bucket is empty: nothing is sent
	ctx := context.Background()
	e.Observe(ctx, snap)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		e.Observe(ctx, snap)
	}
	b.StopTimer()
	b.ReportMetric(float64(len(snap.Faults)), "faults/op")
}

// TestPromtoolCheckMetrics lints the engine's exposition with the real
// promtool (skipped when it is missing, unless FLEETD_REQUIRE_REAL=1).
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool := realprog.Find(t, "promtool")
	v := newEnv(t, nil)
	f := newFleet(map[string]int{"L1": 10})
	for i := range 4 {
		f.fault("L1", i, health.Unhealthy, t0.Add(-time.Hour), 5)
	}
	v.e.Observe(context.Background(), f.snap(t0)) // a location storm
	v.e.episodes[faultKey{"L1-d9", health.LockMismatch}] = &episodeRecord{DeviceID: "L1-d9", Alias: "A9", LocationID: "L1",
		Fault: health.LockMismatch, Attempts: 3}
	mfs, err := v.reg.Gather()
	mustNil(t, err)
	var buf bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"fleetd_remediation_skipped_total", "fleetd_remediation_commands_total", "fleetd_remediation_verified_total",
		"fleetd_remediation_in_flight", "fleetd_remediation_storm_active", "fleetd_remediation_exhausted", "fleetd_remediation_paused"} {
		if !bytes.Contains(buf.Bytes(), []byte("\n"+name+"{")) && !bytes.Contains(buf.Bytes(), []byte("\n"+name+" ")) {
			t.Errorf("exposition lacks %s", name)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// BenchmarkExhausted derives the exhausted episodes, as every scrape of
// fleetd_remediation_exhausted and every status read does under the engine
// mutex: 5,000 episodes that used every attempt, and commands in flight or
// awaiting verification for other episodes, so none is pending.
func BenchmarkExhausted(b *testing.B) {
	for _, cmds := range []int{100, 5000} {
		b.Run(fmt.Sprintf("episodes=5000/commands=%d", cmds), func(b *testing.B) {
			p := testPolicy(b.TempDir())
			l, err := OpenLedger(p.Ledger)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			clock := newClock()
			e, err := New(Options{Policy: p, Commander: newCommander(clock.Now), Ledger: l, Registerer: prometheus.NewRegistry(), Now: clock.Now})
			if err != nil {
				b.Fatal(err)
			}
			for i := range 5000 {
				id := fmt.Sprintf("dev-%05d", i)
				e.episodes[faultKey{id, health.Unhealthy}] = &episodeRecord{DeviceID: id, LocationID: "L1",
					Fault: health.Unhealthy, Attempts: e.policy.MaxAttempts}
			}
			for i := range cmds {
				id := fmt.Sprintf("other-%05d", i)
				key := fmt.Sprintf("cmd-%05d", i)
				e.commands[key] = &command{key: key, rec: commandRecord{DeviceID: id, LocationID: "L1", Fault: health.Unhealthy}}
			}
			b.ReportAllocs()
			for b.Loop() {
				e.mu.Lock()
				n := len(e.exhaustedLocked())
				e.mu.Unlock()
				if n != 5000 {
					b.Fatalf("%d exhausted, want 5000", n)
				}
			}
		})
	}
}
