package exporter

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/scrape"
)

// benchSnapshot is a fleet of locations×perLoc devices, 5 % of them faulty,
// run through the real tracker.
func benchSnapshot(locations, perLoc int) *scrape.Snapshot {
	tr := health.NewTracker(health.Params{LockMismatchGrace: time.Minute, TransitionGrace: time.Minute, RentalMaxDuration: 24 * time.Hour})
	snap := &scrape.Snapshot{Taken: t0}
	snap.Sources = []scrape.SourceStatus{{Name: "bikeep", Up: true, Walked: true, LastSuccess: t0, Walks: 1}}
	n := 0
	for l := range locations {
		loc := scrape.LocationStatus{ID: fmt.Sprintf("loc-%04d", l), Name: fmt.Sprintf("Location %d", l),
			Type: bikeep.LocationBikeLockers, Up: true, LastSuccess: t0}
		for d := range perLoc {
			dv := dev(fmt.Sprintf("%04d-%02d", l, d), fmt.Sprintf("FR-%04d-%02d", l, d), loc.ID, bikeep.TypeLocker, bikeep.HealthHealthy, bikeep.HardwareNormal)
			dv.Commands = map[string]string{"sync-device": "x"}
			if n%20 == 0 { // 5 %
				if n%40 == 0 {
					dv.HeartbeatV2.Health = bikeep.HealthUnhealthy
				} else {
					dv.HardwareState = bikeep.HardwareError
				}
			}
			n++
			loc.Devices = append(loc.Devices, dv.Record())
		}
		tr.ObserveRecords(t0, loc.ID, loc.Devices)
		snap.Locations = append(snap.Locations, loc)
	}
	snap.Faults = tr.Faults()
	return snap
}

// BenchmarkWarm measures encoding a new snapshot's fleet metrics, the work
// the daemon does once per walk (in the walk's goroutine, via Handler.Warm)
// for each format scraped lately: OpenMetrics only, as when Prometheus alone
// scrapes; text only; and both, as when a person looks too.
func BenchmarkWarm(b *testing.B) {
	snap := benchSnapshot(2000, 50)
	for _, tc := range []struct {
		name    string
		formats []expfmt.Format
	}{
		{"openmetrics", []expfmt.Format{expfmt.NewFormat(expfmt.TypeOpenMetrics)}},
		{"text", []expfmt.Format{expfmt.NewFormat(expfmt.TypeTextPlain)}},
		{"text+openmetrics", []expfmt.Format{expfmt.NewFormat(expfmt.TypeTextPlain), expfmt.NewFormat(expfmt.TypeOpenMetrics)}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := NewHandler(prometheus.NewRegistry(), &staticSource{snap}, false, nil)
			for _, f := range tc.formats {
				if _, err := h.fleetEncoded(f); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for range b.N {
				cp := *snap
				h.Warm(&cp)
			}
		})
	}
}

// BenchmarkScrapeMetrics measures one /metrics scrape over 2,000 locations ×
// 50 devices with 5 % faulty, through the daemon's Handler (Go and process
// metrics included). The first scrape after a walk encodes the snapshot's
// fleet metrics; later ones reuse them, so both are measured. "series" counts
// the fleet series.
func BenchmarkScrapeMetrics(b *testing.B) {
	snap := benchSnapshot(2000, 50)
	for _, tc := range []struct {
		name    string
		rebuild bool
	}{{"scrape", false}, {"first-scrape-unwarmed", true}} {
		b.Run(tc.name, func(b *testing.B) {
			src := &staticSource{snap}
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			h := NewHandler(reg, src, false, nil)
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			req.Header.Set("Accept", "text/plain")
			all := prometheus.NewRegistry()
			all.MustRegister(NewCollector(src, false))
			series := testSeries(all)
			if !tc.rebuild {
				// The steady state: the format was scraped before and the
				// walk's Warm encoded this snapshot in it. Without this the
				// first iteration did the encoding, and at make bench's five
				// iterations it was most of the figure (69 ms against 10–12).
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
			}
			b.ResetTimer()
			for range b.N {
				if tc.rebuild {
					cp := *snap
					src.snap = &cp
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatal(w.Code)
				}
				io.Copy(io.Discard, w.Body)
			}
			b.ReportMetric(float64(series), "series") // after the loop: ResetTimer clears it
			b.ReportMetric(float64(len(snap.Faults)), "faults")
		})
	}
}

func testSeries(g prometheus.Gatherer) int {
	mfs, _ := g.Gather()
	n := 0
	for _, mf := range mfs {
		n += len(mf.Metric)
	}
	return n
}
