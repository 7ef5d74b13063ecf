package promnames

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakePrometheus answers the query API the way Prometheus would for a
// server that has the series named in have: a query that does not parse is
// bad_data (400); one whose every metric is in have returns one series; any
// other returns none. Each request is recorded as "<path> <query>".
type fakePrometheus struct {
	have  map[string]bool
	calls []string
}

func (f *fakePrometheus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	q := r.Form.Get("query")
	f.calls = append(f.calls, r.URL.Path+" "+q)
	w.Header().Set("Content-Type", "application/json")
	names, err := FromExpr(q)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"status": "error", "errorType": "bad_data", "error": err.Error()})
		return
	}
	found := len(names) > 0
	for _, n := range names {
		found = found && f.have[n]
	}
	if strings.Contains(q, `"no-such-location"`) || strings.HasSuffix(q, "> 0") {
		found = false // filters that select nothing on this server
	}
	var result []any
	kind := "vector"
	if r.URL.Path == "/api/v1/query_range" {
		kind = "matrix"
		if found {
			result = append(result, map[string]any{"metric": map[string]string{}, "values": [][]any{{1, "1"}}})
		}
	} else if found {
		result = append(result, map[string]any{"metric": map[string]string{}, "value": []any{1, "1"}})
	}
	json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": kind, "result": result}})
}

// The checker must fail a dashboard whose queries are broken, name each
// broken panel, accept an excused empty panel and refuse stale excuses.
func TestCheckPanelsCatchesBrokenQueries(t *testing.T) {
	fake := &fakePrometheus{have: map[string]bool{"fleet_devices": true, "fleetd_api_requests_total": true, "fleetd_remediation_storm_active": true}}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	queries, err := PanelQueries("testdata/broken-queries.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(queries) != 6 {
		t.Fatalf("%d queries, want 6 (collapsed rows included)", len(queries))
	}
	empty, err := LoadEmptyOK("testdata/empty-ok.yml")
	if err != nil {
		t.Fatal(err)
	}
	end := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	got := CheckPanels(context.Background(), Prometheus{BaseURL: srv.URL}, queries, empty, end.Add(-5*time.Minute), end, 15*time.Second)
	want := []string{
		`panel 2 "Renamed metric"/A: no data for sum(fleet_device{location_id=~".*"})`,
		`panel 3 "Syntax error"/A: query sum by (api) (rate(fleetd_api_requests_total[1m]): HTTP 400: bad_data:`,
		`panel 4 "Undefined variable"/A: variables the dashboard does not define: $site`,
		`panel 7 "Impossible filter, instant"/A: no data for fleet_devices{location_id="no-such-location"}`,
		`empty-ok: broken-queries panel 4 "Renamed panel" is not a panel of the dashboards checked`,
		`empty-ok: broken-queries panel 9 "Gone" is not a panel of the dashboards checked`,
	}
	if len(got) != len(want) {
		t.Fatalf("%d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("problem %d:\n got %s\nwant it to contain %s", i, got[i], want[i])
		}
	}
	// The instant panel went to /api/v1/query, the others to query_range.
	if !slices.Contains(fake.calls, `/api/v1/query fleet_devices{location_id="no-such-location"}`) ||
		!slices.Contains(fake.calls, `/api/v1/query_range sum(fleet_devices{location_id=~".*"})`) {
		t.Errorf("instant and range queries not told apart: %q", fake.calls)
	}
}

func TestResolveVariables(t *testing.T) {
	vars := map[string]string{"datasource": "prometheus", "location": ".*"}
	end := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct{ expr, want, err string }{
		{`up{location_id=~"$location"}`, `up{location_id=~".*"}`, ""},
		{`x{scope=~"${location:regex}"}`, `x{scope=~".*"}`, ""},
		{`x{l=~"[[location]]"}`, `x{l=~".*"}`, ""},
		{`rate(x[$__rate_interval])`, `rate(x[1m])`, ""},
		{`increase(x[$__range])`, `increase(x[10m])`, ""},
		{`x[$__interval] / $__range_s`, `x[15s] / 600`, ""},
		{`x{a="$site", b="$$"}`, "", "$site"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got, err := PanelQuery{Expr: tt.expr, Vars: vars}.Resolve(end.Add(-10*time.Minute), end, 15*time.Second)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Resolve = %q, %v; want an error naming %s", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Resolve = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestLoadEmptyOKWantsAReason(t *testing.T) {
	for name, doc := range map[string]string{
		"no reason":     "d:\n  1: {title: T}\n",
		"no title":      "d:\n  1: {reason: only during a storm}\n",
		"unknown field": "d:\n  1: {title: T, reason: r, because: x}\n",
		"not an id":     "d:\n  storms: {title: T, reason: r}\n",
	} {
		t.Run(name, func(t *testing.T) {
			path := t.TempDir() + "/empty-ok.yml"
			writeFile(t, path, doc)
			if _, err := LoadEmptyOK(path); err == nil {
				t.Errorf("LoadEmptyOK accepted %q", doc)
			}
		})
	}
}

// FuzzResolve: Resolve never panics, and when it reports no error no
// variable is left in the query it returns.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{`up{l=~"$location"}`, `rate(x[$__rate_interval])`, `x{s=~"${location:regex}"}`,
		`x{l=~"[[location]]"}`, `$`, `${`, `[[`, `$$location`, `${location`, `[[location]`, `$site`} {
		f.Add(s)
	}
	vars := map[string]string{"location": ".*", "datasource": "prometheus"}
	end := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, expr string) {
		out, err := PanelQuery{Expr: expr, Vars: vars}.Resolve(end.Add(-time.Hour), end, 30*time.Second)
		if err != nil {
			return
		}
		for i := range out {
			if m := reVariable.FindString(out[i:]); m != "" {
				t.Fatalf("Resolve(%q) = %q: %s left unresolved", expr, out, m)
			}
		}
	})
}
