package promnames

import (
	"slices"
	"strings"
	"testing"
)

func TestFromExpr(t *testing.T) {
	tests := []struct {
		name, expr string
		want       []string
	}{
		{"bare selector", `fleet_devices`, []string{"fleet_devices"}},
		{"matchers", `fleet_devices{location_id="L1", health!="OK"}`, []string{"fleet_devices"}},
		{"name matcher", `{__name__="fleetd_source_up", source="bikeep"}`, []string{"fleetd_source_up"}},
		{"name regex matcher names nothing", `{__name__=~"fleetd_.+"}`, nil},
		{"range and function", `rate(fleetd_api_requests_total[5m])`, []string{"fleetd_api_requests_total"}},
		{"aggregation", `sum by (location_id) (fleet_device_faults)`, []string{"fleet_device_faults"}},
		{"topk with param", `topk(5, fleetd_source_walk_duration_seconds)`, []string{"fleetd_source_walk_duration_seconds"}},
		{"quantile", `histogram_quantile(0.99, sum by (le) (rate(fleetd_api_request_duration_seconds_bucket[5m])))`,
			[]string{"fleetd_api_request_duration_seconds_bucket"}},
		{"binary with matching, sorted and deduped",
			`fleetd_remediation_exhausted and on (device_id) fleet_device_fault_since_timestamp_seconds unless fleetd_remediation_exhausted`,
			[]string{"fleet_device_fault_since_timestamp_seconds", "fleetd_remediation_exhausted"}},
		{"subquery", `max_over_time(rate(fleetd_source_walks_total[5m])[1h:1m])`, []string{"fleetd_source_walks_total"}},
		{"offset and @", `fleet_location_up offset 1h - fleet_location_up @ 1700000000`, []string{"fleet_location_up"}},
		{"label_replace keeps strings out", `label_replace(fleetd_remediation_storm_active, "location_id", "$1", "scope", "(fleet_x)")`,
			[]string{"fleetd_remediation_storm_active"}},
		{"absent", `absent(up{job="fleetd"})`, []string{"up"}},
		{"time and scalars only", `time() - 5 * 60`, nil},
		{"keyword-like label values", `copri_rentals{state="sum", lock_state="rate"}`, []string{"copri_rentals"}},
		{"experimental function parses", `sort_by_label(copri_bikes, "station")`, []string{"copri_bikes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromExpr(tt.expr)
			if err != nil {
				t.Fatalf("FromExpr(%q): %v", tt.expr, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("FromExpr(%q) = %q, want %q", tt.expr, got, tt.want)
			}
		})
	}
}

func TestFromExprError(t *testing.T) {
	for _, expr := range []string{`sum(`, `rate(x[5m]`, `fleet_devices{`, ``} {
		t.Run(expr, func(t *testing.T) {
			if got, err := FromExpr(expr); err == nil {
				t.Fatalf("FromExpr(%q) = %q, want an error", expr, got)
			}
		})
	}
}

func TestFromRuleFile(t *testing.T) {
	got, err := FromRuleFile("testdata/rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := []Use{
		{"fleet_devices", "testdata/rules.yml", "job:fleet_devices:sum"},
		{"fleetd_api_requests_total", "testdata/rules.yml", "Multi"},
		{"fleetd_source_up", "testdata/rules.yml", "Multi"},
		{"up", "testdata/rules.yml", "Absent"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("FromRuleFile:\n got %v\nwant %v", got, want)
	}
}

func TestFromRuleFileErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ name, content, wantErr string }{
		{"bad expr", "groups:\n- name: g\n  rules:\n  - alert: Broken\n    expr: sum(\n", "Broken"},
		{"empty expr", "groups:\n- name: g\n  rules:\n  - record: r\n", "r: empty expr"},
		{"not yaml", "groups: [\n", "rule file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := dir + "/" + strings.ReplaceAll(tt.name, " ", "_") + ".yml"
			writeFile(t, p, tt.content)
			_, err := FromRuleFile(p)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("FromRuleFile: err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	if _, err := FromRuleFile(dir + "/missing.yml"); err == nil {
		t.Error("FromRuleFile(missing): no error")
	}
}

func TestFromDashboard(t *testing.T) {
	const f = "testdata/dashboard.json"
	got, err := FromDashboard(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []Use{
		{"fleetd_api_requests_total", f, "Rates/A"},
		{"fleet_devices", f, "Rates/B"},
		{"fleetd_source_walks_total", f, "Inside/A"},
		{"fleet_location_up", f, "Inside/B"},
		{"copri_rentals", f, "By label/A"},
		{"fleetd_build_info", f, "Old/A"},
		{"fleet_location_info", f, "templating location"},
		{"fleetd_source_up", f, "templating source"},
		{"copri_bikes", f, "templating exact"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("FromDashboard:\n got %v\nwant %v", got, want)
	}
}

func TestFromDashboardErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ name, content, wantErr string }{
		{"bad target", `{"panels":[{"title":"P","targets":[{"refId":"A","expr":"sum(x"}]}]}`, "P/A"},
		{"bad nested target", `{"panels":[{"title":"Row","panels":[{"title":"In","targets":[{"refId":"Z","expr":"rate(x[5m]"}]}]}]}`, "In/Z"},
		{"bad variable", `{"templating":{"list":[{"name":"v","type":"query","query":"label_values(x{, l)"}]}}`, "templating v"},
		{"variable query of the wrong type", `{"templating":{"list":[{"name":"v","type":"query","query":5}]}}`, "templating v"},
		{"not json", `{`, "dashboard"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := dir + "/" + strings.ReplaceAll(tt.name, " ", "_") + ".json"
			writeFile(t, p, tt.content)
			_, err := FromDashboard(p)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("FromDashboard: err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestSubstitute(t *testing.T) {
	tests := []struct{ in, want string }{
		{`rate(m[$__rate_interval])`, `rate(m[5m])`},
		{`rate(m[${__interval}])`, `rate(m[5m])`},
		{`increase(m[$__range]) / $__range_s`, `increase(m[5m]) / 300`},
		{`m{a=~"$loc", b="${loc:regex}", c="[[loc]]"}`, `m{a=~"stand_in", b="stand_in", c="stand_in"}`},
		{`topk($n, m)`, `topk(1, m)`},
		{`m[$window]`, `m[5m]`},
		{`m{a="cost \"$5\""}`, `m{a="cost \"stand_in\""}`},
		{`m{a="$"}`, `m{a="$"}`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := substitute(tt.in, false); got != tt.want {
				t.Errorf("substitute(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	if got, want := substitute(`sum by ($group) (m)`, true), `sum by (group) (m)`; got != want {
		t.Errorf("substitute as name = %q, want %q", got, want)
	}
}

func TestSynthetic(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"up", true}, {"ALERTS", true}, {"ALERTS_FOR_STATE", true}, {"scrape_duration_seconds", true},
		{"scrape_samples_scraped", true}, {"fleet_devices", false}, {"upper", false}, {"alerts", false},
		{"fleetd_up", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Synthetic(tt.name); got != tt.want {
				t.Errorf("Synthetic(%q) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}
