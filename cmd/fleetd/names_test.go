package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/promnames"
)

// exposedNames returns the names a /metrics body carries: every family
// (from its TYPE line) and every sample name (_bucket, _sum, _count of
// histograms included), the latter also as "sample:<name>" so a family
// announced without samples can be told apart.
func exposedNames(body string) map[string]bool {
	names := map[string]bool{}
	for _, m := range familyRe.FindAllStringSubmatch(body, -1) {
		names[m[1]] = true
	}
	for _, m := range sampleRe.FindAllStringSubmatch(body, -1) {
		names[m[1]] = true
		names["sample:"+m[1]] = true
	}
	return names
}

var sampleRe = regexp.MustCompile(`(?m)^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]`)

// queriedNames collects the metric names alerts.yml and every dashboard query.
func queriedNames(t *testing.T, rules string, dashboards []string) []promnames.Use {
	t.Helper()
	uses, err := promnames.FromRuleFile(rules)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dashboards {
		u, err := promnames.FromDashboard(d)
		if err != nil {
			t.Fatal(err)
		}
		uses = append(uses, u...)
	}
	return uses
}

// drifted returns the uses whose metric the exposition lacks.
func drifted(uses []promnames.Use, exposed map[string]bool) []string {
	var out []string
	for _, u := range uses {
		if !exposed[u.Metric] && !promnames.Synthetic(u.Metric) {
			out = append(out, fmt.Sprintf("%s (%s: %s)", u.Metric, filepath.Base(u.File), u.Where))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func repoDashboards(t *testing.T) []string {
	t.Helper()
	ds, err := filepath.Glob("../../dashboards/*.json")
	if err != nil || len(ds) == 0 {
		t.Fatalf("no dashboards found: %v", err)
	}
	return ds
}

// checkNoDrift fails unless every metric alerts.yml and the dashboards query
// is among exposed, the names seen on the /metrics of a fleetd running on
// the simulator. The fleetd_cluster_* names only a replica with a cluster
// section exposes are checked by TestReplicasShareTheFleet
// (checkClusterNames).
func checkNoDrift(t *testing.T, exposed map[string]bool) {
	t.Helper()
	uses := slices.DeleteFunc(queriedNames(t, "../../alerts.yml", repoDashboards(t)), func(u promnames.Use) bool {
		return strings.HasPrefix(u.Metric, clusterPrefix)
	})
	if len(uses) < 20 {
		t.Fatalf("only %d metric uses found in alerts.yml and dashboards; the parser is not seeing them", len(uses))
	}
	if bad := drifted(uses, exposed); len(bad) > 0 {
		t.Fatalf("alerts.yml or dashboards query metrics fleetd does not produce:\n  %s", strings.Join(bad, "\n  "))
	}
}

// The check itself must catch a renamed metric in a rule or a dashboard.
func TestNameDriftCheckCatchesUnknownNames(t *testing.T) {
	exposed := exposedNames(`# TYPE fleet_devices gauge
fleet_devices{location_id="1"} 3
# TYPE fleetd_api_request_duration_seconds histogram
fleetd_api_request_duration_seconds_bucket{le="+Inf"} 1
fleetd_api_request_duration_seconds_sum 0.1
fleetd_api_request_duration_seconds_count 1
`)
	uses := queriedNames(t, "testdata/drift/rules.yml", []string{"testdata/drift/dashboard.json"})
	got := drifted(uses, exposed)
	want := []string{
		"fleet_device (dashboard.json: Typo panel/A)",
		"fleetd_remediation_sent_total (rules.yml: RenamedCounter)",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("drifted = %q\nwant      %q", got, want)
	}
}

// clusterPrefix names the metrics of slot leases (package cluster).
const clusterPrefix = "fleetd_cluster_"

// checkClusterNames fails unless every fleetd_cluster_* metric alerts.yml
// and the dashboards query is among exposed (a replica's names), and at
// least one is queried.
func checkClusterNames(t *testing.T, exposed map[string]bool) {
	t.Helper()
	uses := slices.DeleteFunc(queriedNames(t, "../../alerts.yml", repoDashboards(t)), func(u promnames.Use) bool {
		return !strings.HasPrefix(u.Metric, clusterPrefix)
	})
	if len(uses) == 0 {
		t.Fatal("no fleetd_cluster_* metric is queried by alerts.yml or the dashboards")
	}
	if bad := drifted(uses, exposed); len(bad) > 0 {
		t.Fatalf("alerts.yml or dashboards query cluster metrics a replica does not produce:\n  %s", strings.Join(bad, "\n  "))
	}
}
