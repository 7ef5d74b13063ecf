package status

import (
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/scrape"
)

var update = flag.Bool("update", false, "rewrite testdata/*.html golden files")

// fixedNow is the clock of every fixture.
var fixedNow = time.Date(2025, 5, 12, 9, 30, 0, 0, time.UTC)

const xssAlias = `<script>alert(1)</script>"'&`

func dev(id, alias string, typ bikeep.DeviceType, h bikeep.Health) bikeep.Device {
	d := bikeep.Device{ID: id, Alias: alias, Type: typ}
	if h != "" {
		d.HeartbeatV2 = &bikeep.HeartbeatV2{Health: h}
	}
	return d
}

// fixtureSnapshot is a small fleet with one of everything the page shows.
func fixtureSnapshot() *scrape.Snapshot {
	at := func(ago time.Duration) time.Time { return fixedNow.Add(-ago) }
	return &scrape.Snapshot{
		Taken: at(10 * time.Second),
		Sources: []scrape.SourceStatus{
			{Name: "bikeep", Up: true, Walked: true, LastSuccess: at(10 * time.Second), LastDuration: 1234 * time.Millisecond, Walks: 120, Failures: 2},
			{Name: "copri/freiburg", Up: false, Walked: true, LastSuccess: at(7 * time.Minute), LastDuration: 350 * time.Millisecond, Walks: 60, Failures: 5, LastError: `copri freiburg: Failure 1001: <b>authcookie</b> "expired"`},
		},
		Locations: []scrape.LocationStatus{
			{ID: "loc-0001", Name: "Hauptbahnhof <Süd>", Type: bikeep.LocationBikeDocks, Up: true, LastSuccess: at(10 * time.Second), Devices: bikeep.Records(
				dev("dev-0001-01", "D-0101", bikeep.TypeBikeDock, bikeep.HealthHealthy),
				dev("dev-0001-02", xssAlias, bikeep.TypeBikeDock, bikeep.HealthUnhealthy),
				dev("dev-0001-03", "D-0103", bikeep.TypeBikeDock, bikeep.HealthDead),
				dev("dev-0001-04", "D-0104", bikeep.TypeBikeDock, ""),
			)},
			{ID: "loc-0002", Name: "Uni Lockers", Type: bikeep.LocationBikeLockers, Up: false, LastSuccess: at(2 * time.Minute), LastError: "503 Service Unavailable", Devices: bikeep.Records(
				dev("dev-0002-01", "L-0201", bikeep.TypeLocker, bikeep.HealthHealthy),
				dev("dev-0002-02", "L-0202", bikeep.TypeLocker, bikeep.HealthLongDead),
			)},
			{ID: "loc-0003", Up: false, Stale: true, LastSuccess: at(time.Hour), LastError: "context deadline exceeded"},
		},
		Faults: []health.Fault{
			{Kind: health.Unhealthy, DeviceID: "dev-0001-02", Alias: xssAlias, LocationID: "loc-0001", DeviceType: bikeep.TypeBikeDock, Recoverable: true, Since: at(5 * time.Minute), Walks: 10},
			{Kind: health.Dead, DeviceID: "dev-0001-03", Alias: "D-0103", LocationID: "loc-0001", DeviceType: bikeep.TypeBikeDock, Since: at(26 * time.Hour), Walks: 3000},
			{Kind: health.HardwareError, DeviceID: "dev-0001-04", Alias: "D-0104", LocationID: "loc-0001", DeviceType: bikeep.TypeBikeDock, Recoverable: true, Since: at(3 * time.Hour), Walks: 300},
			{Kind: health.LongDead, DeviceID: "dev-0002-02", Alias: "L-0202", LocationID: "loc-0002", DeviceType: bikeep.TypeLocker, Since: at(9 * 24 * time.Hour), Walks: 9000},
			{Kind: health.UnknownState, DeviceID: "dev-0002-02", Alias: "L-0202", LocationID: "loc-0002", DeviceType: bikeep.TypeLocker, Since: at(40 * time.Second), Walks: 2, Detail: `hardware_state="QUANTUM_FLUX"`},
		},
		RentalFaults: []health.RentalFault{
			{Kind: health.Overdue, Operator: "freiburg", BookingID: "155896", Bike: "FR1005", Station: "FR101", Since: at(6 * time.Hour), Detail: "open 30h0m0s"},
		},
	}
}

func fixtureRemediation() *Remediation {
	return &Remediation{
		Enabled: true, Paused: true, PauseReason: `operator <ops@example.org> "maintenance"`, PausedSince: fixedNow.Add(-20 * time.Minute),
		Trigger:   "both",
		Storms:    []Storm{{Scope: "loc-0001", Since: fixedNow.Add(-4 * time.Minute), Ratio: 0.75}},
		InFlight:  1,
		Exhausted: []Exhausted{{DeviceID: "dev-0001-04", Alias: "D-0104", LocationID: "loc-0001", Fault: "hardware_error", Attempts: 3}},
		Decisions: []Decision{
			{Time: fixedNow.Add(-time.Minute), DeviceID: "dev-0001-02", Alias: xssAlias, LocationID: "loc-0001", Fault: "unhealthy", Source: "walk", Outcome: "skipped", Reason: "storm"},
			{Time: fixedNow.Add(-30 * time.Minute), DeviceID: "dev-0001-04", Alias: "D-0104", LocationID: "loc-0001", Fault: "hardware_error", Source: "alertmanager", Outcome: "sent", Attempt: 3, PowerCycle: true, CommandID: "cmd-9f2", Result: "not_fixed"},
		},
		DeviceState: map[string]string{"dev-0001-02": "in flight (attempt 2)", "dev-0001-04": "exhausted"},
	}
}

func newTestHandler(t testing.TB, opts Options) http.Handler {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return fixedNow }
	}
	h, err := NewHandler(opts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func get(h http.Handler, method, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"full", Options{
			Snapshot:    fixtureSnapshot,
			Remediation: fixtureRemediation,
			Version:     "1.2.3", TelemetryPath: "/metrics", AdminAPI: true,
		}},
		{"no_walk_yet", Options{
			Snapshot: func() *scrape.Snapshot { return nil },
			Version:  "1.2.3",
		}},
		{"remediation_off", Options{
			Snapshot: func() *scrape.Snapshot {
				return &scrape.Snapshot{Taken: fixedNow, Sources: []scrape.SourceStatus{{Name: "bikeep", Up: true, Walked: true, LastSuccess: fixedNow}}}
			},
			Remediation:   func() *Remediation { return nil },
			TelemetryPath: "/custom-metrics",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := get(newTestHandler(t, tc.opts), http.MethodGet, "/")
			if rec.Code != http.StatusOK {
				t.Fatalf("code %d: %s", rec.Code, rec.Body)
			}
			path := filepath.Join("testdata", tc.name+".html")
			if *update {
				if err := os.WriteFile(path, rec.Body.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if got := rec.Body.String(); got != string(want) {
				t.Errorf("page differs from %s (run with -update and review the diff):\n%s", path, firstDiff(got, string(want)))
			}
		})
	}
}

// firstDiff shows where two texts first differ.
func firstDiff(got, want string) string {
	gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			return fmt.Sprintf("line %d:\n got %q\nwant %q", i+1, g, w)
		}
	}
	return "(no line differs)"
}

func TestHeadersAndRouting(t *testing.T) {
	h := newTestHandler(t, Options{Snapshot: fixtureSnapshot})
	for _, tc := range []struct {
		method, path string
		code         int
		bodyEmpty    bool
	}{
		{http.MethodGet, "/", 200, false},
		{http.MethodHead, "/", 200, true},
		{http.MethodPost, "/", 405, false},
		{http.MethodDelete, "/", 405, false},
		{http.MethodGet, "/index.html", 404, false},
		{http.MethodGet, "/api/v1/alerts", 404, false},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := get(h, tc.method, tc.path)
			if rec.Code != tc.code {
				t.Fatalf("code %d, want %d", rec.Code, tc.code)
			}
			if tc.bodyEmpty != (rec.Body.Len() == 0) {
				t.Errorf("body length %d, want empty=%v", rec.Body.Len(), tc.bodyEmpty)
			}
			if tc.code == 405 && rec.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow = %q", rec.Header().Get("Allow"))
			}
			if tc.code != 200 {
				return
			}
			for k, v := range map[string]string{
				"Content-Type":            "text/html; charset=utf-8",
				"Cache-Control":           "no-store",
				"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
				"X-Content-Type-Options":  "nosniff",
			} {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestNewHandlerNeedsSnapshot(t *testing.T) {
	if _, err := NewHandler(Options{}); err == nil {
		t.Error("no error without Snapshot")
	}
}

func TestContent(t *testing.T) {
	page := get(newTestHandler(t, Options{
		Snapshot: fixtureSnapshot, Remediation: fixtureRemediation, Version: "1.2.3", AdminAPI: true,
	}), http.MethodGet, "/").Body.String()

	t.Run("escapes everything", func(t *testing.T) {
		for _, bad := range []string{"<script", "<b>authcookie", "<Süd>", "<ops@example.org>"} {
			if strings.Contains(page, bad) {
				t.Errorf("page contains unescaped %q", bad)
			}
		}
		for _, good := range []string{
			"&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&amp;",
			"Hauptbahnhof &lt;Süd&gt;",
			"&lt;b&gt;authcookie&lt;/b&gt; &#34;expired&#34;",
		} {
			if !strings.Contains(page, good) {
				t.Errorf("page lacks escaped %q", good)
			}
		}
	})
	t.Run("no script or external resource", func(t *testing.T) {
		if regexp.MustCompile(`(?i)<script|javascript:|\son[a-z]+=|src="http|href="http`).MatchString(page) {
			t.Error("page has script or external resources")
		}
	})
	t.Run("header", func(t *testing.T) {
		for _, s := range []string{"<code>1.2.3</code>", "2025-05-12 09:29:50 UTC", `<span class="badge ok">ready</span>`} {
			if !strings.Contains(page, s) {
				t.Errorf("header lacks %q", s)
			}
		}
	})
	t.Run("links", func(t *testing.T) {
		for _, s := range []string{`href="/metrics"`, `href="/-/healthy"`, `href="/-/ready"`, `href="/api/v1/remediation"`} {
			if !strings.Contains(page, s) {
				t.Errorf("page lacks link %s", s)
			}
		}
	})
	t.Run("summary counts", func(t *testing.T) {
		for _, s := range []string{
			`<tr><td>HEALTHY</td><td class="n">2</td></tr>`,
			`<tr><td>no data</td><td class="n">1</td></tr>`,
			`<tr><th>total</th><th class="n">6</th></tr>`,
			`<tr><td><code>dead</code></td><td class="n bad">1</td></tr>`,
			`<tr><td><code>lock_mismatch</code></td><td class="n">0</td></tr>`,
			`<tr><td>stale (not reported)</td><td class="n bad">1</td></tr>`,
		} {
			if !strings.Contains(page, s) {
				t.Errorf("summary lacks %s", s)
			}
		}
	})
	t.Run("faults sorted page-worthy first", func(t *testing.T) {
		// dead, then exhausted, then not recoverable, then recoverable, then long_dead.
		order := []string{"dev-0001-03", "dev-0001-04", "QUANTUM_FLUX", "dev-0001-02", "long_dead</code><"}
		sec := page[strings.Index(page, `id="faults"`):strings.Index(page, `id="rentals"`)]
		last := -1
		for _, s := range order {
			i := strings.Index(sec, s)
			if i < 0 || i < last {
				t.Fatalf("%q at %d, after %d: wrong order", s, i, last)
			}
			last = i
		}
	})
	t.Run("since and state", func(t *testing.T) {
		for _, s := range []string{"for 26h", "for 5m", "for 40s", "for 9d", "in flight (attempt 2)", `<time datetime="2025-05-11T07:30:00Z">2025-05-11 07:30:00 UTC</time>`} {
			if !strings.Contains(page, s) {
				t.Errorf("faults table lacks %q", s)
			}
		}
	})
	t.Run("remediation", func(t *testing.T) {
		for _, s := range []string{
			`<span class="badge bad">paused</span>`, "operator &lt;ops@example.org&gt; &#34;maintenance&#34;",
			"<code>loc-0001</code>", "75 %", "<code>both</code>", "cmd-9f2", "not_fixed", "power cycle",
		} {
			if !strings.Contains(page, s) {
				t.Errorf("remediation lacks %q", s)
			}
		}
	})
}

func TestNotReadyAndOff(t *testing.T) {
	page := get(newTestHandler(t, Options{
		Snapshot: func() *scrape.Snapshot {
			return &scrape.Snapshot{Taken: fixedNow, Sources: []scrape.SourceStatus{{Name: "bikeep"}}}
		},
	}), http.MethodGet, "/").Body.String()
	for _, s := range []string{"waiting for first walk", "Remediation is off.", "No faulty devices."} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	if strings.Contains(page, "/api/v1/remediation") {
		t.Error("admin API linked although AdminAPI is false")
	}
}

// manyFaults is a snapshot with n faults spread over 100 locations.
func manyFaults(n int) *scrape.Snapshot {
	s := &scrape.Snapshot{Taken: fixedNow, Sources: []scrape.SourceStatus{{Name: "bikeep", Up: true, Walked: true}}}
	kinds := health.DeviceFaultKinds()
	for l := range 100 {
		s.Locations = append(s.Locations, scrape.LocationStatus{ID: fmt.Sprintf("loc-%04d", l), Name: fmt.Sprintf("Location %d", l), Up: true})
	}
	for i := range n {
		k := kinds[i%len(kinds)]
		s.Faults = append(s.Faults, health.Fault{
			Kind: k, DeviceID: fmt.Sprintf("dev-%05d", i), Alias: fmt.Sprintf("A-%05d", i),
			LocationID: fmt.Sprintf("loc-%04d", i%100), Recoverable: k.RecoverableKind(),
			Since: fixedNow.Add(-time.Duration(i) * time.Second),
		})
	}
	return s
}

func TestRowCap(t *testing.T) {
	s := manyFaults(MaxRows + 37)
	page := get(newTestHandler(t, Options{Snapshot: func() *scrape.Snapshot { return s }}), http.MethodGet, "/").Body.String()
	if got := strings.Count(page, `<tr class="`); got != MaxRows {
		t.Errorf("%d fault rows, want %d", got, MaxRows)
	}
	if !strings.Contains(page, "37 more faulty devices not shown") {
		t.Error("no 'N more' note")
	}
	if !strings.Contains(page, fmt.Sprintf("Faulty devices <small>(%d)</small>", MaxRows+37)) {
		t.Error("heading does not count every fault")
	}
}

func TestHumanDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"}, {0, "0s"}, {59 * time.Second, "59s"}, {5 * time.Minute, "5m"},
		{time.Hour, "1h"}, {26*time.Hour + 3*time.Minute, "26h 3m"}, {48 * time.Hour, "2d"}, {75 * time.Hour, "3d 3h"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if got := humanDuration(tc.d); got != tc.want {
				t.Errorf("humanDuration(%v) = %q, want %q", tc.d, got, tc.want)
			}
		})
	}
}

func BenchmarkRender5000Faults(b *testing.B) {
	s := manyFaults(5000)
	h := newTestHandler(b, Options{Snapshot: func() *scrape.Snapshot { return s }, Remediation: fixtureRemediation})
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}
