package exporter

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestAPIMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewAPIMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	b := m.For("bikeep")
	b.ObserveRequest("/device/v1/locations/{id}/devices", "GET", 200, 30*time.Millisecond)
	b.ObserveRequest("/device/v1/locations/{id}/devices", "GET", 503, 10*time.Millisecond)
	b.ObserveRequest("/device/v1/locations/{id}/devices", "GET", 0, time.Second)
	b.ObserveRetry("/device/v1/locations/{id}/devices", "GET")
	m.For("copri/freiburg").ObserveRequest("request=user_bikes_occupied", "POST", 200, 5*time.Millisecond)

	want := `
# HELP fleetd_api_requests_total Vendor API requests (every attempt) by API, route template and HTTP status ("error" when no response arrived).
# TYPE fleetd_api_requests_total counter
fleetd_api_requests_total{api="bikeep",code="200",endpoint="/device/v1/locations/{id}/devices"} 1
fleetd_api_requests_total{api="bikeep",code="503",endpoint="/device/v1/locations/{id}/devices"} 1
fleetd_api_requests_total{api="bikeep",code="error",endpoint="/device/v1/locations/{id}/devices"} 1
fleetd_api_requests_total{api="copri/freiburg",code="200",endpoint="request=user_bikes_occupied"} 1
# HELP fleetd_api_retries_total Vendor API requests retried after a 429, a 5xx or a transport error.
# TYPE fleetd_api_retries_total counter
fleetd_api_retries_total{api="bikeep",endpoint="/device/v1/locations/{id}/devices"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "fleetd_api_requests_total", "fleetd_api_retries_total"); err != nil {
		t.Fatal(err)
	}
	b.ObserveBackoff(1500 * time.Millisecond)
	b.ObserveTruncated("alias")
	b.ObserveTruncated("alias")
	want = `
# HELP fleetd_api_backoff_seconds Client-wide pause the API's client last set after the vendor throttled (429), 0 once an answer is not throttled.
# TYPE fleetd_api_backoff_seconds gauge
fleetd_api_backoff_seconds{api="bikeep"} 1.5
fleetd_api_backoff_seconds{api="copri/freiburg"} 0
# HELP fleetd_api_values_truncated_total Vendor string values shortened to their length cap before reaching a label, a log line or the page, by API and field.
# TYPE fleetd_api_values_truncated_total counter
fleetd_api_values_truncated_total{api="bikeep",field="alias"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "fleetd_api_backoff_seconds", "fleetd_api_values_truncated_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.duration); n != 2 {
		t.Fatalf("duration series = %d, want 2", n)
	}
	if _, err := NewAPIMetrics(reg); err == nil {
		t.Fatal("registering twice must fail")
	}
}

func TestBuildInfoAndReload(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if err := RegisterBuildInfo(reg, "1.2.3", "abc"); err != nil {
		t.Fatal(err)
	}
	r, err := NewConfigReload(reg)
	if err != nil {
		t.Fatal(err)
	}
	r.Record(true, time.Unix(100, 0))
	r.Record(false, time.Unix(200, 0))
	if v := testutil.ToFloat64(r.ok); v != 0 {
		t.Fatalf("last reload successful = %v, want 0", v)
	}
	if v := testutil.ToFloat64(r.when); v != 100 {
		t.Fatalf("last success time = %v, want 100", v)
	}
	mfs, _ := reg.Gather()
	var found bool
	for _, mf := range mfs {
		if mf.GetName() == "fleetd_build_info" {
			found = true
			labels := map[string]string{}
			for _, lp := range mf.Metric[0].Label {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["version"] != "1.2.3" || labels["revision"] != "abc" || !strings.HasPrefix(labels["goversion"], "go") || len(labels) != 3 {
				t.Fatalf("build info labels = %v", labels)
			}
		}
	}
	if !found {
		t.Fatal("fleetd_build_info missing")
	}
}
