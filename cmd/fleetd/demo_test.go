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

// demoMetrics are the catalog metrics the demo's sources produce. The
// remediation metrics join this list with the remediation engine.
var demoMetrics = []string{
	"fleet_devices", "fleet_device_faults", "fleet_device_fault_since_timestamp_seconds",
	"fleet_location_up", "fleet_location_last_success_timestamp_seconds", "fleet_location_info",
	"fleet_device_info", "fleet_device_health",
	"copri_rentals", "copri_rental_fault_since_timestamp_seconds", "copri_bikes",
	"fleetd_source_up", "fleetd_source_last_success_timestamp_seconds", "fleetd_source_walk_duration_seconds",
	"fleetd_source_walks_total", "fleetd_source_walk_failures_total",
	"fleetd_api_requests_total", "fleetd_api_request_duration_seconds", "fleetd_api_retries_total",
	"fleetd_config_last_reload_successful", "fleetd_build_info",
}

// demoFaultLabels are the fault kinds the demo injects, as exported.
var demoFaultLabels = []string{"unhealthy", "dead", "long_dead", "hardware_error", "not_responding",
	"stuck_transition", "lock_mismatch", "rental_lock_mismatch", "unknown_state"}

var familyRe = regexp.MustCompile(`(?m)^# TYPE (\S+) `)

func TestDemoServesTheCatalogWithinAMinute(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo for up to a minute")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut strings.Builder
	app, cmds := newApp(&out, &errOut)
	if _, err := app.Parse([]string{"demo", "--web.listen-address", "127.0.0.1:0", "--log.level", "error"}); err != nil {
		t.Fatal(err)
	}
	demo := cmds["demo"].(*demoCmd)
	demo.ctx = ctx
	base := make(chan string, 1)
	demo.onReady = func(u string) { base <- u }
	exited := make(chan int, 1)
	go func() { exited <- demo.run() }()

	var url string
	select {
	case url = <-base:
	case code := <-exited:
		t.Fatalf("demo exited with %d: %s", code, errOut.String())
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not start listening")
	}
	deadline := time.Now().Add(60 * time.Second)
	var missing []string
	for time.Now().Before(deadline) {
		body := fetch(t, url+"/metrics")
		missing = missingFrom(body)
		if len(missing) == 0 {
			break
		}
		time.Sleep(2 * time.Second)
	}
	if len(missing) > 0 {
		t.Fatalf("after a minute /metrics still lacks: %v", missing)
	}
	if !strings.Contains(out.String(), url+"/metrics") {
		t.Fatalf("demo did not print its metrics URL:\n%s", out.String())
	}
	cancel()
	select {
	case code := <-exited:
		if code != 0 {
			t.Fatalf("demo exited with %d after cancel: %s", code, errOut.String())
		}
	case <-time.After(shutdownGrace + 5*time.Second):
		t.Fatal("demo did not stop")
	}
}

func missingFrom(body string) []string {
	have := map[string]bool{}
	for _, m := range familyRe.FindAllStringSubmatch(body, -1) {
		have[m[1]] = true
	}
	var missing []string
	for _, name := range demoMetrics {
		// A histogram's samples are its _bucket, _sum and _count series.
		if !have[name] || !regexp.MustCompile(`(?m)^`+name+`(_bucket|_count)?[{ ]`).MatchString(body) {
			missing = append(missing, name)
		}
	}
	for _, f := range demoFaultLabels {
		if !strings.Contains(body, `fault="`+f+`"`) || !regexp.MustCompile(`fleet_device_fault_since_timestamp_seconds\{[^}]*fault="`+f+`"`).MatchString(body) {
			missing = append(missing, "fault="+f)
		}
	}
	slices.Sort(missing)
	return missing
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
