package promnames

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The name-drift check proves that dashboards query metrics fleetd has; the
// panel check here proves more: that every panel's query, with its
// variables resolved the way Grafana resolves them, returns data from a real
// Prometheus — or that the panel is declared as one that may be empty, with
// the reason.

// PanelQuery is one target of one dashboard panel.
type PanelQuery struct {
	File       string
	UID        string // of the dashboard
	PanelID    int
	PanelTitle string
	RefID      string
	Expr       string
	// Instant queries are evaluated at the end of the time range only (table
	// and stat panels showing "now"); the others over the whole range.
	Instant bool
	// Vars are the dashboard's variables with the values Grafana uses when
	// "All" is selected (a query variable's allValue).
	Vars map[string]string
}

// Where names q in failures: "fleetd.json panel 9 "Walk duration"/A".
func (q PanelQuery) Where() string {
	return fmt.Sprintf("%s panel %d %q/%s", q.File, q.PanelID, q.PanelTitle, q.RefID)
}

// PanelQueries reads every Prometheus target of the dashboard at path,
// including those of collapsed rows.
func PanelQueries(path string) ([]PanelQuery, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	var d struct {
		UID        string       `json:"uid"`
		Panels     []queryPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string          `json:"name"`
				Type       string          `json:"type"`
				Query      json.RawMessage `json:"query"`
				IncludeAll bool            `json:"includeAll"`
				AllValue   string          `json:"allValue"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("dashboard %s: %w", path, err)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		switch {
		case v.Type == "datasource":
			var q string
			_ = json.Unmarshal(v.Query, &q)
			vars[v.Name] = q
		case v.IncludeAll && v.AllValue != "":
			vars[v.Name] = v.AllValue
		case v.IncludeAll:
			// Without allValue Grafana sends every value, joined as a
			// regular expression alternation; any value matches like .*.
			vars[v.Name] = ".*"
		}
	}
	var out []PanelQuery
	var walk func([]queryPanel)
	walk = func(ps []queryPanel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) == "" {
					continue
				}
				out = append(out, PanelQuery{
					File: path, UID: d.UID, PanelID: p.ID, PanelTitle: p.Title, RefID: t.RefID,
					Expr: t.Expr, Instant: t.Instant && !t.Range, Vars: vars,
				})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out, nil
}

type queryPanel struct {
	ID      int          `json:"id"`
	Title   string       `json:"title"`
	Panels  []queryPanel `json:"panels"`
	Targets []struct {
		RefID   string `json:"refId"`
		Expr    string `json:"expr"`
		Instant bool   `json:"instant"`
		Range   bool   `json:"range"`
	} `json:"targets"`
}

// Resolve substitutes the dashboard's variables in q.Expr and Grafana's
// built-in ones for the time range [start, end] queried in steps of step:
// $__interval is the step, $__rate_interval four steps but at least one
// minute (Grafana's rule for a scrape interval of step), $__range the whole
// range. A variable the dashboard does not define is an error: Grafana
// would send it to Prometheus as it is.
func (q PanelQuery) Resolve(start, end time.Time, step time.Duration) (string, error) {
	rng := end.Sub(start).Round(time.Second)
	builtin := map[string]string{
		"__interval":      promDuration(step),
		"__interval_ms":   strconv.FormatInt(step.Milliseconds(), 10),
		"__rate_interval": promDuration(max(4*step, time.Minute)),
		"__range":         promDuration(rng),
		"__range_s":       strconv.FormatInt(int64(rng.Seconds()), 10),
		"__range_ms":      strconv.FormatInt(rng.Milliseconds(), 10),
	}
	var b strings.Builder
	var unknown []string
	for i := 0; i < len(q.Expr); {
		if q.Expr[i] == '$' || strings.HasPrefix(q.Expr[i:], "[[") {
			if m := reVariable.FindStringSubmatch(q.Expr[i:]); m != nil {
				name := m[1] + m[2] + m[3]
				v, ok := q.Vars[name]
				if !ok {
					v, ok = builtin[name]
				}
				if !ok {
					unknown = append(unknown, m[0])
				}
				b.WriteString(v)
				i += len(m[0])
				continue
			}
		}
		b.WriteByte(q.Expr[i])
		i++
	}
	if len(unknown) > 0 {
		return "", fmt.Errorf("variables the dashboard does not define: %s", strings.Join(unknown, ", "))
	}
	return b.String(), nil
}

// promDuration writes d the way PromQL reads it ("90s", "1m").
func promDuration(d time.Duration) string {
	if d%time.Minute == 0 {
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return strconv.FormatInt(int64(d.Round(time.Second)/time.Second), 10) + "s"
}

// EmptyOK lists the panels that may show no data, each with the reason: by
// dashboard uid, then panel id. The title is repeated so that a panel id
// reused for another panel does not inherit an excuse.
type EmptyOK map[string]map[int]EmptyReason

// EmptyReason says why a panel may be empty.
type EmptyReason struct {
	Title  string `yaml:"title"`
	Reason string `yaml:"reason"`
}

// LoadEmptyOK reads the list (dashboards/empty-ok.yml):
//
//	<dashboard uid>:
//	  <panel id>: {title: <panel title>, reason: <why it may be empty>}
func LoadEmptyOK(path string) (EmptyOK, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	var e EmptyOK
	if err := dec.Decode(&e); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for uid, panels := range e {
		for id, r := range panels {
			if strings.TrimSpace(r.Title) == "" || strings.TrimSpace(r.Reason) == "" {
				return nil, fmt.Errorf("%s: %s panel %d: title and reason are required", path, uid, id)
			}
		}
	}
	return e, nil
}

// Querier runs PromQL against a Prometheus and counts the series returned.
type Querier interface {
	// Query evaluates expr at t (an instant query) and returns the number
	// of series in the result.
	Query(ctx context.Context, expr string, t time.Time) (int, error)
	// QueryRange evaluates expr over [start, end] and returns the number of
	// series with at least one sample.
	QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) (int, error)
}

// CheckPanels runs every query over [start, end] and returns one problem
// per query that fails, has an unresolved variable, or returns no data
// although its panel is not in empty; and one per entry of empty that names
// no panel of the dashboards checked (a stale excuse).
func CheckPanels(ctx context.Context, q Querier, queries []PanelQuery, empty EmptyOK, start, end time.Time, step time.Duration) []string {
	var problems []string
	panels := map[string]map[int]string{} // uid → id → title
	for _, pq := range queries {
		if panels[pq.UID] == nil {
			panels[pq.UID] = map[int]string{}
		}
		panels[pq.UID][pq.PanelID] = pq.PanelTitle
		expr, err := pq.Resolve(start, end, step)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", pq.Where(), err))
			continue
		}
		var n int
		if pq.Instant {
			n, err = q.Query(ctx, expr, end)
		} else {
			n, err = q.QueryRange(ctx, expr, start, end, step)
		}
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: query %s: %v", pq.Where(), expr, err))
		case n == 0:
			if r, ok := empty[pq.UID][pq.PanelID]; ok && r.Title == pq.PanelTitle {
				continue
			}
			problems = append(problems, fmt.Sprintf("%s: no data for %s (fix the query, or list the panel in the empty-ok file with the reason)", pq.Where(), expr))
		}
	}
	for _, uid := range sortedKeys(empty) {
		for _, id := range sortedKeys(empty[uid]) {
			if title, ok := panels[uid][id]; !ok || title != empty[uid][id].Title {
				problems = append(problems, fmt.Sprintf("empty-ok: %s panel %d %q is not a panel of the dashboards checked", uid, id, empty[uid][id].Title))
			}
		}
	}
	return problems
}

func sortedKeys[K int | string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Prometheus is a Querier over the Prometheus HTTP API at BaseURL.
type Prometheus struct {
	BaseURL string
	Client  *http.Client // http.DefaultClient when nil
}

// Query implements Querier with /api/v1/query.
func (p Prometheus) Query(ctx context.Context, expr string, t time.Time) (int, error) {
	return p.get(ctx, "/api/v1/query", url.Values{"query": {expr}, "time": {unix(t)}})
}

// QueryRange implements Querier with /api/v1/query_range.
func (p Prometheus) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) (int, error) {
	return p.get(ctx, "/api/v1/query_range", url.Values{
		"query": {expr}, "start": {unix(start)}, "end": {unix(end)}, "step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	})
}

func unix(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

// maxResponseBytes bounds what is read of one Prometheus answer.
const maxResponseBytes = 32 << 20

func (p Prometheus) get(ctx context.Context, path string, params url.Values) (int, error) {
	hc := p.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(p.BaseURL, "/")+path, strings.NewReader(params.Encode()))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Value  json.RawMessage   `json:"value"`
				Values []json.RawMessage `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBytes)).Decode(&body); err != nil {
		return 0, fmt.Errorf("HTTP %d, undecodable answer: %w", resp.StatusCode, err)
	}
	if body.Status != "success" {
		return 0, fmt.Errorf("HTTP %d: %s: %s", resp.StatusCode, body.ErrorType, body.Error)
	}
	n := 0
	switch body.Data.ResultType {
	case "vector":
		n = len(body.Data.Result)
	case "matrix":
		for _, r := range body.Data.Result {
			if len(r.Values) > 0 {
				n++
			}
		}
	case "scalar", "string":
		n = 1
	default:
		return 0, fmt.Errorf("unexpected result type %q", body.Data.ResultType)
	}
	return n, nil
}
