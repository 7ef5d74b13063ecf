package promnames

import (
	"github.com/fleetd/fleetd/internal/realprog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const root = "../.."

// TestRepoNamesHaveFleetdPrefixes reads the real alerts.yml and dashboards:
// every metric they query is fleetd's (fleet_, fleetd_, copri_) or made by
// Prometheus itself, so a typo in a prefix fails here. The cross-check
// against a live daemon's exposition lives with the daemon.
func TestRepoNamesHaveFleetdPrefixes(t *testing.T) {
	uses, err := FromRuleFile(filepath.Join(root, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(uses) == 0 {
		t.Fatal("alerts.yml: no metric names found")
	}
	dashboards, err := filepath.Glob(filepath.Join(root, "dashboards", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dashboards) < 4 {
		t.Fatalf("found %d dashboards, want at least 4", len(dashboards))
	}
	for _, d := range dashboards {
		u, err := FromDashboard(d)
		if err != nil {
			t.Fatal(err)
		}
		if len(u) == 0 {
			t.Errorf("%s: no metric names found", d)
		}
		uses = append(uses, u...)
	}
	for _, u := range uses {
		if !Synthetic(u.Metric) && !strings.HasPrefix(u.Metric, "fleet_") &&
			!strings.HasPrefix(u.Metric, "fleetd_") && !strings.HasPrefix(u.Metric, "copri_") {
			t.Errorf("%v: not a fleetd metric (want prefix fleet_, fleetd_ or copri_)", u)
		}
	}
}

// alertTests is the part of a promtool test file this package checks.
type alertTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name  string `yaml:"name"`
		Cases []struct {
			EvalTime  string `yaml:"eval_time"`
			AlertName string `yaml:"alertname"`
			ExpAlerts []struct {
				Labels      map[string]string `yaml:"exp_labels"`
				Annotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestEveryAlertIsTested holds alerts_test.yml to its promise: each alert in
// alerts.yml fires in some case with its severity and all three annotations
// spelled out, and stays silent in another.
func TestEveryAlertIsTested(t *testing.T) {
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, filepath.Join(root, "alerts.yml"), &rules)
	var tests alertTests
	readYAML(t, filepath.Join(root, "alerts_test.yml"), &tests)
	if !slices.Equal(tests.RuleFiles, []string{"alerts.yml"}) {
		t.Errorf("alerts_test.yml rule_files = %q, want [alerts.yml]", tests.RuleFiles)
	}

	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, c := range tc.Cases {
			if len(c.ExpAlerts) == 0 {
				silent[c.AlertName] = true
			}
			for _, a := range c.ExpAlerts {
				if a.Labels["severity"] == "" || a.Annotations["summary"] == "" ||
					a.Annotations["description"] == "" || a.Annotations["runbook_url"] == "" {
					t.Errorf("test %q, %s at %s: expected alert lacks severity or an annotation", tc.Name, c.AlertName, c.EvalTime)
				}
				fires[c.AlertName] = true
			}
		}
	}
	severities := map[string]bool{"page": true, "ticket": true, "info": true}
	forLiteral := regexp.MustCompile(`^[0-9]+[smhd]$`)
	anchors := runbookAnchors(t)
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if !fires[r.Alert] {
				t.Errorf("%s: no test case where it fires", r.Alert)
			}
			if !silent[r.Alert] {
				t.Errorf("%s: no test case where it stays silent", r.Alert)
			}
			if !severities[r.Labels["severity"]] {
				t.Errorf("%s: severity %q, want page, ticket or info", r.Alert, r.Labels["severity"])
			}
			if !forLiteral.MatchString(r.For) {
				t.Errorf("%s: for %q is not a plain duration literal", r.Alert, r.For)
			}
			want := "https://github.com/fleetd/fleetd/blob/main/docs/runbooks.md#" + strings.ToLower(r.Alert)
			if r.Annotations["runbook_url"] != want {
				t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
			}
			if !anchors[strings.ToLower(r.Alert)] {
				t.Errorf("%s: docs/runbooks.md has no section \"## %s\"", r.Alert, r.Alert)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: summary or description missing", r.Alert)
			}
		}
	}
	if n < 20 {
		t.Errorf("alerts.yml: %d alerts, want the full set (at least 20)", n)
	}
}

// runbookAnchors returns the GitHub anchors of docs/runbooks.md's "## " headings.
func runbookAnchors(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docs", "runbooks.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			anchors[strings.ToLower(strings.TrimSpace(h))] = true
		}
	}
	return anchors
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestPromtool runs the real promtool over the rules, their unit tests and
// the example Prometheus configuration, and amtool over the Alertmanager one.
func TestPromtool(t *testing.T) {
	tests := []struct {
		name    string
		program []string
		args    []string
	}{
		{"check rules", []string{"promtool"}, []string{"check", "rules", "alerts.yml"}},
		{"test rules", []string{"promtool"}, []string{"test", "rules", "alerts_test.yml"}},
		{"check prometheus config", []string{"promtool"}, []string{"check", "config", "deploy/prometheus.yml"}},
		{"check alertmanager config", []string{"amtool", "/usr/bin/amtool"}, []string{"check-config", "deploy/alertmanager.yml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog := realprog.Find(t, tt.program...)
			cmd := exec.Command(prog, tt.args...)
			cmd.Dir = root
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s %s: %v\n%s", prog, strings.Join(tt.args, " "), err, out)
			}
		})
	}
}
