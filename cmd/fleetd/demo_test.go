package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// demoMetrics are the catalog metrics the demo produces.
var demoMetrics = []string{
	"fleetd_remediation_commands_total", "fleetd_remediation_verified_total", "fleetd_remediation_skipped_total",
	"fleetd_remediation_in_flight", "fleetd_remediation_storm_active", "fleetd_remediation_exhausted",
	"fleetd_remediation_paused", "fleetd_alerts_received_total", "fleetd_alerts_rejected_total",
	"fleet_devices", "fleet_device_faults", "fleet_device_fault_since_timestamp_seconds",
	"fleet_location_up", "fleet_location_partial", "fleetd_location_undecodable_devices_total",
	"fleet_location_last_success_timestamp_seconds", "fleet_location_info",
	"fleet_device_info", "fleet_device_health",
	"copri_rentals", "copri_rental_fault_since_timestamp_seconds", "copri_bikes",
	"fleetd_source_up", "fleetd_source_last_success_timestamp_seconds", "fleetd_source_walk_duration_seconds",
	"fleetd_source_walks_total", "fleetd_source_walk_failures_total",
	"fleetd_api_requests_total", "fleetd_api_request_duration_seconds", "fleetd_api_retries_total",
	"fleetd_config_last_reload_successful", "fleetd_config_info", "fleetd_build_info",
}

// demoFaultLabels are the fault kinds the demo injects, as exported.
var demoFaultLabels = []string{"unhealthy", "dead", "long_dead", "hardware_error", "not_responding",
	"stuck_transition", "lock_mismatch", "rental_lock_mismatch", "unknown_state"}

var familyRe = regexp.MustCompile(`(?m)^# TYPE (\S+) `)

// The demo shows the whole catalog within two minutes: every fault kind (the
// recoverable ones only until remediation cures them, so the check collects
// what it saw over time), remediation retrying a device it cannot cure until
// it is exhausted. Alerts and dashboards are then held against the names seen:
// none may query a metric fleetd does not produce. A real Prometheus scrapes
// the demo all along, and every dashboard panel's query must return data
// from it.
func TestDemoServesTheCatalog(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo for up to two minutes")
	}
	t.Parallel()
	demo := startDemo(t)
	url := demo.url
	prom := scrapeWithPrometheus(t, url)
	deadline := time.Now().Add(150 * time.Second)
	var missing []string
	seen := map[string]bool{}
	faultSeries := map[string]*regexp.Regexp{}
	for _, f := range demoFaultLabels {
		faultSeries[f] = regexp.MustCompile(`fleet_device_fault_since_timestamp_seconds\{[^}]*fault="` + f + `"`)
	}
	for time.Now().Before(deadline) {
		body := fetch(t, url+"/metrics")
		for name := range exposedNames(body) {
			seen[name] = true
		}
		for f, re := range faultSeries {
			if re.MatchString(body) {
				seen["fault="+f] = true
			}
		}
		if missing = missingFrom(seen); len(missing) == 0 {
			break
		}
		// Remediation cures some injected faults within a second or two of
		// their grace (rental_lock_mismatch showed for 0.8-2.8 s in 6 runs),
		// so a poll every second could miss one.
		time.Sleep(200 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Fatalf("after 150s the demo's /metrics still lacked: %v", missing)
	}
	t.Run("no name drift in alerts and dashboards", func(t *testing.T) { checkNoDrift(t, seen) })
	t.Run("every dashboard panel returns data through a real Prometheus", func(t *testing.T) {
		if prom == nil {
			t.Skip("Prometheus is not installed")
		}
		checkDashboardPanels(t, prom)
	})
	page := fetch(t, url+"/")
	if !strings.Contains(page, "Faulty devices") {
		t.Errorf("status page at / missing:\n%s", page)
	}
	t.Run("status page names the failing location and keeps every fault kind", func(t *testing.T) {
		for _, s := range []string{`id="locations"`, "HTTP 500", "1 of 20 locations failing", "12 expected"} {
			if !strings.Contains(page, s) {
				t.Errorf("status page lacks %q", s)
			}
		}
		// Cured faults stay on the page for an hour, so every kind the
		// metrics showed is still there, active or ended.
		i, j := strings.Index(page, `<section id="faults">`), strings.Index(page, `<section id="rentals">`)
		if i < 0 || j < i {
			t.Fatal("no faults and ended sections")
		}
		for _, f := range demoFaultLabels {
			if !strings.Contains(page[i:j], "<code>"+f+"</code>") {
				t.Errorf("fault kind %s neither active nor ended on the status page", f)
			}
		}
	})
	if !strings.Contains(demo.out.String(), url+"/metrics") {
		t.Fatalf("demo did not print its metrics URL:\n%s", demo.out.String())
	}
	demo.stop(t)
}

// demoRun is a `fleetd demo` running in this process.
type demoRun struct {
	url         string
	out, errOut *lockedBuffer
	cancel      context.CancelFunc
	exited      chan int
}

// startDemo runs `fleetd demo` at ten times real time, so the two minutes
// of fleet life the README promises pass in about twelve seconds. It
// returns once the demo listens; the demo is stopped when the test ends.
func startDemo(t *testing.T) *demoRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	d := &demoRun{out: &lockedBuffer{}, errOut: &lockedBuffer{}, cancel: cancel, exited: make(chan int, 1)}
	app, cmds := newApp(d.out, d.errOut)
	if _, err := app.Parse([]string{"demo", "--web.listen-address", "127.0.0.1:0", "--log.level", "error"}); err != nil {
		t.Fatal(err)
	}
	demo := cmds["demo"].(*demoCmd)
	demo.ctx = ctx
	demo.speed = 10
	base := make(chan string, 1)
	demo.onReady = func(u string) { base <- u }
	go func() { d.exited <- demo.run() }()
	select {
	case d.url = <-base:
	case code := <-d.exited:
		t.Fatalf("demo exited with %d: %s", code, d.errOut.String())
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not start listening")
	}
	return d
}

// stop cancels the demo and requires a clean exit.
func (d *demoRun) stop(t *testing.T) {
	t.Helper()
	d.cancel()
	select {
	case code := <-d.exited:
		if code != 0 {
			t.Fatalf("demo exited with %d after cancel: %s", code, d.errOut.String())
		}
	case <-time.After(shutdownGrace + 5*time.Second):
		t.Fatal("demo did not stop")
	}
}

// missingFrom lists the catalog metrics and fault kinds not yet seen. A
// metric counts as seen once it has a sample (a histogram: its _count).
func missingFrom(seen map[string]bool) []string {
	var missing []string
	for _, name := range demoMetrics {
		if !seen[name] || !sampled(seen, name) {
			missing = append(missing, name)
		}
	}
	for _, f := range demoFaultLabels {
		if !seen["fault="+f] {
			missing = append(missing, "fault="+f)
		}
	}
	slices.Sort(missing)
	return missing
}

func sampled(seen map[string]bool, name string) bool {
	return seen["sample:"+name] || seen["sample:"+name+"_count"]
}

func fetch(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
