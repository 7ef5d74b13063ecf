// Package dashboards holds fleetd's Grafana dashboards (JSON) and their
// provisioning files; its test checks the dashboards' structure.
package dashboards

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	sdkdashboard "github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"gopkg.in/yaml.v3"

	"github.com/fleetd/fleetd/internal/promnames"
)

type panel struct {
	ID          int             `json:"id"`
	Type        string          `json:"type"`
	Title       string          `json:"title"`
	Description string          `json:"description"`
	Datasource  json.RawMessage `json:"datasource"`
	GridPos     *gridPos        `json:"gridPos"`
	Collapsed   bool            `json:"collapsed"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []struct {
		RefID      string          `json:"refId"`
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// gridPos is a panel's place on Grafana's 24-column grid.
type gridPos struct{ X, Y, W, H int }

func (g gridPos) overlaps(o gridPos) bool {
	return g.X < o.X+o.W && o.X < g.X+g.W && g.Y < o.Y+o.H && o.Y < g.Y+g.H
}

type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource json.RawMessage `json:"datasource"`
			Multi      bool            `json:"multi"`
			IncludeAll bool            `json:"includeAll"`
		} `json:"list"`
	} `json:"templating"`
}

// numeric panel types need a unit.
var numeric = map[string]bool{"timeseries": true, "stat": true, "gauge": true, "bargauge": true, "table": true, "piechart": true}

// rangeOfRate finds the range of every rate/irate call.
var rangeOfRate = regexp.MustCompile(`\b(?:rate|irate)\([^\[\)]*\[([^\]]+)\]`)

func TestDashboards(t *testing.T) {
	files, err := filepath.Glob("*.json")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"fleet-overview.json", "fleetd.json", "remediation.json", "rentals.json"}
	for _, w := range want {
		if _, err := os.Stat(w); err != nil {
			t.Errorf("missing dashboard %s", w)
		}
	}
	uids := map[string]string{}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var d dashboard
			if err := json.Unmarshal(b, &d); err != nil {
				t.Fatalf("invalid JSON: %v", err)
			}
			if d.UID == "" || d.Title == "" {
				t.Errorf("uid %q, title %q: both required", d.UID, d.Title)
			}
			if other, dup := uids[d.UID]; dup {
				t.Errorf("uid %q also used by %s", d.UID, other)
			}
			uids[d.UID] = f
			if d.SchemaVersion < 39 {
				t.Errorf("schemaVersion %d, want ≥ 39", d.SchemaVersion)
			}
			vars := map[string]int{}
			for i, v := range d.Templating.List {
				vars[v.Name] = i
			}
			if i, ok := vars["datasource"]; !ok {
				t.Error("no datasource variable")
			} else if v := d.Templating.List[i]; v.Type != "datasource" || string(v.Query) != `"prometheus"` {
				t.Errorf("datasource variable: type %q query %s, want datasource / prometheus", v.Type, v.Query)
			}
			if i, ok := vars["location"]; !ok {
				t.Error("no location variable")
			} else {
				v := d.Templating.List[i]
				if v.Type != "query" || !v.Multi || !v.IncludeAll ||
					!strings.Contains(string(v.Query), `label_values(fleet_location_info, location_id)`) {
					t.Errorf("location variable: type %q multi %v includeAll %v query %s", v.Type, v.Multi, v.IncludeAll, v.Query)
				}
				checkDatasource(t, "location variable", v.Datasource)
			}
			ids := map[int]bool{}
			var walk func([]panel)
			walk = func(ps []panel) {
				for _, p := range ps {
					if ids[p.ID] {
						t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
					}
					ids[p.ID] = true
					if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
						t.Errorf("panel %q: no gridPos", p.Title)
					}
					if p.Type == "row" {
						walk(p.Panels)
						continue
					}
					if p.Title == "" || p.Description == "" {
						t.Errorf("panel %q: title and description required", p.Title)
					}
					checkDatasource(t, "panel "+p.Title, p.Datasource)
					if numeric[p.Type] && p.FieldConfig.Defaults.Unit == "" {
						t.Errorf("panel %q (%s): no unit", p.Title, p.Type)
					}
					if len(p.Targets) == 0 {
						t.Errorf("panel %q: no targets", p.Title)
					}
					for _, tg := range p.Targets {
						where := p.Title + "/" + tg.RefID
						checkDatasource(t, "target "+where, tg.Datasource)
						if strings.TrimSpace(tg.Expr) == "" {
							t.Errorf("target %s: empty expr", where)
						}
						for _, m := range rangeOfRate.FindAllStringSubmatch(tg.Expr, -1) {
							if m[1] != "$__rate_interval" {
								t.Errorf("target %s: rate over [%s], want [$__rate_interval]", where, m[1])
							}
						}
					}
				}
			}
			walk(d.Panels)
			if len(ids) < 5 {
				t.Errorf("%d panels, want a real dashboard", len(ids))
			}
			for _, o := range overlaps(d.Panels) {
				t.Error(o)
			}
		})
	}
}

// overlaps lists the panels that share grid cells or leave the 24-column
// grid. Grafana lays out the top level, and the panels of each collapsed
// row when it is opened, as one grid each.
func overlaps(ps []panel) []string {
	var out []string
	for i, p := range ps {
		if p.GridPos == nil {
			continue
		}
		if g := *p.GridPos; g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			out = append(out, fmt.Sprintf("panel %d %q: gridPos %+v leaves the 24-column grid", p.ID, p.Title, g))
		}
		for _, q := range ps[:i] {
			if q.GridPos != nil && p.GridPos.overlaps(*q.GridPos) {
				out = append(out, fmt.Sprintf("panels %d %q and %d %q overlap: %+v, %+v", q.ID, q.Title, p.ID, p.Title, *q.GridPos, *p.GridPos))
			}
		}
		if p.Type == "row" && p.Collapsed {
			out = append(out, overlaps(p.Panels)...)
		}
	}
	return out
}

func TestOverlapCheckCatchesOverlaps(t *testing.T) {
	at := func(id, x, y, w, h int) panel {
		return panel{ID: id, Title: fmt.Sprint(id), GridPos: &gridPos{x, y, w, h}}
	}
	tests := []struct {
		name   string
		panels []panel
		want   int
	}{
		{"side by side", []panel{at(1, 0, 0, 12, 8), at(2, 12, 0, 12, 8)}, 0},
		{"stacked", []panel{at(1, 0, 0, 24, 1), at(2, 0, 1, 24, 8)}, 0},
		{"one column shared", []panel{at(1, 0, 0, 13, 8), at(2, 12, 0, 12, 8)}, 1},
		{"one row shared", []panel{at(1, 0, 0, 24, 9), at(2, 0, 8, 6, 4)}, 1},
		{"wider than the grid", []panel{at(1, 20, 0, 8, 4)}, 1},
		{"inside a collapsed row", []panel{{ID: 1, Type: "row", Collapsed: true, GridPos: &gridPos{0, 0, 24, 1},
			Panels: []panel{at(2, 0, 1, 12, 8), at(3, 6, 1, 12, 8)}}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := overlaps(tt.panels); len(got) != tt.want {
				t.Errorf("overlaps = %q, want %d", got, tt.want)
			}
		})
	}
}

// strictDecode decodes a dashboard into the Grafana Foundation SDK's
// dashboard type, failing on unknown fields, missing required ones and
// wrong types, down to each panel's options and Prometheus queries.
func strictDecode(b []byte) error {
	var d sdkdashboard.Dashboard
	err := d.UnmarshalJSONStrict(b)
	// The SDK returns its error list typed even when it is empty.
	if be, ok := errors.AsType[cog.BuildErrors](err); ok && len(be) == 0 {
		return nil
	}
	return err
}

func TestDashboardsDecodeStrictly(t *testing.T) {
	plugins.RegisterDefaultPlugins() // panel options and dataqueries decode by their type
	files, err := filepath.Glob("*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := strictDecode(b); err != nil {
				t.Errorf("not a valid Grafana dashboard:\n%v", err)
			}
		})
	}
}

// The strict decoding must fail where Grafana would silently drop or
// misread a field.
func TestStrictDecodeRejects(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	b, err := os.ReadFile("fleetd.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, from, to, want string }{
		{"unknown dashboard field", `"schemaVersion":`, `"schemaVersions": 39, "schemaVersion":`, "unexpected field 'schemaVersions'"},
		{"unknown panel field", `"gridPos": {`, `"gridpos": {}, "gridPos": {`, "unexpected field 'gridpos'"},
		{"unknown target field", `"refId": "A"`, `"refId": "A", "exp": "up"`, "unexpected field 'exp'"},
		{"unknown option", `"textMode": `, `"textmode": "auto", "textMode": `, "textmode"},
		{"wrong type", `"schemaVersion": `, `"schemaVersion": "39", "x": `, "schemaVersion"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(string(b), tt.from) {
				t.Fatalf("fleetd.json has no %s", tt.from)
			}
			broken := strings.Replace(string(b), tt.from, tt.to, 1)
			err := strictDecode([]byte(broken))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("strictDecode = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

func checkDatasource(t *testing.T, where string, raw json.RawMessage) {
	t.Helper()
	var ds struct{ Type, UID string }
	if err := json.Unmarshal(raw, &ds); err != nil || ds.Type != "prometheus" || ds.UID != "${datasource}" {
		t.Errorf("%s: datasource %s, want {\"type\":\"prometheus\",\"uid\":\"${datasource}\"}", where, raw)
	}
}

func TestProvisioning(t *testing.T) {
	var dash struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name, Type string
			Options    struct{ Path string } `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "provisioning/dashboards.yml", &dash)
	if dash.APIVersion != 1 || len(dash.Providers) != 1 || dash.Providers[0].Type != "file" || dash.Providers[0].Options.Path == "" {
		t.Errorf("provisioning/dashboards.yml: %+v, want apiVersion 1 and one file provider with a path", dash)
	}
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, Type, URL string
		} `yaml:"datasources"`
	}
	readYAML(t, "provisioning/datasources.yml", &ds)
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL == "" {
		t.Errorf("provisioning/datasources.yml: %+v, want apiVersion 1 and one prometheus data source with a url", ds)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(false)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// Every excuse in empty-ok.yml names a panel that exists, by id and title,
// and gives a reason; the query test on a real Prometheus relies on it.
func TestEmptyOKNamesRealPanels(t *testing.T) {
	empty, err := promnames.LoadEmptyOK("empty-ok.yml")
	if err != nil {
		t.Fatal(err)
	}
	panels := map[string]map[int]string{}
	files, err := filepath.Glob("*.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		qs, err := promnames.PanelQueries(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range qs {
			if panels[q.UID] == nil {
				panels[q.UID] = map[int]string{}
			}
			panels[q.UID][q.PanelID] = q.PanelTitle
		}
	}
	for uid, ps := range empty {
		for id, r := range ps {
			if got, ok := panels[uid][id]; !ok || got != r.Title {
				t.Errorf("empty-ok.yml: %s panel %d %q: no such panel with a query (found %q)", uid, id, r.Title, got)
			}
		}
	}
}
