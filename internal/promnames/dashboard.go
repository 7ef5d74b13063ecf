package promnames

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// dashboard is the part of a Grafana dashboard model that holds queries.
// Rows are the pre-5.0 layout; current dashboards nest collapsed rows'
// panels in Panel.Panels.
type dashboard struct {
	Panels     []panel `json:"panels"`
	Rows       []panel `json:"rows"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Title   string   `json:"title"`
	Panels  []panel  `json:"panels"`
	Targets []target `json:"targets"`
}

type target struct {
	RefID string `json:"refId"`
	Expr  string `json:"expr"`
}

type variable struct {
	Name  string          `json:"name"`
	Type  string          `json:"type"`
	Query json.RawMessage `json:"query"`
}

// FromDashboard returns the metric names used by the Grafana dashboard JSON
// at path: every target's expr, in panels, collapsed rows and old-style rows,
// and every query variable (label_values(m, l), query_result(expr),
// metrics(name)). Grafana variables are replaced by stand-ins the parser
// accepts first ($__rate_interval → 5m, $location → a string or a number,
// depending on where it stands). Where is "<panel title>/<refId>" or
// "templating <variable name>".
func FromDashboard(path string) ([]Use, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("dashboard %s: %w", path, err)
	}
	var uses []Use
	add := func(where, expr string, names func(string) ([]string, error)) error {
		ns, err := names(expr)
		if err != nil {
			return fmt.Errorf("dashboard %s: %s: %w", path, where, err)
		}
		for _, n := range ns {
			uses = append(uses, Use{Metric: n, File: path, Where: where})
		}
		return nil
	}
	var walk func([]panel) error
	walk = func(ps []panel) error {
		for _, p := range ps {
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) == "" {
					continue // not a Prometheus target (or an empty one)
				}
				if err := add(p.Title+"/"+t.RefID, t.Expr, fromGrafanaExpr); err != nil {
					return err
				}
			}
			if err := walk(p.Panels); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(d.Panels); err != nil {
		return nil, err
	}
	if err := walk(d.Rows); err != nil {
		return nil, err
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, err := variableQuery(v.Query)
		if err != nil {
			return nil, fmt.Errorf("dashboard %s: templating %s: %w", path, v.Name, err)
		}
		if q == "" {
			continue
		}
		if err := add("templating "+v.Name, q, fromTemplateQuery); err != nil {
			return nil, err
		}
	}
	return uses, nil
}

// variableQuery reads a query variable's query: a string in older
// dashboards, an object {"query": "...", "refId": ...} in newer ones.
func variableQuery(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var o struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return "", fmt.Errorf("query is neither a string nor an object: %w", err)
	}
	return o.Query, nil
}

var (
	reLabelValues = regexp.MustCompile(`(?s)^label_values\((.*)\)$`)
	reQueryResult = regexp.MustCompile(`(?s)^query_result\((.*)\)$`)
	reMetrics     = regexp.MustCompile(`(?s)^metrics\((.*)\)$`)
	reLabelNames  = regexp.MustCompile(`(?s)^label_names\((.*)\)$`)
	reIdentifier  = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
)

// fromTemplateQuery handles Grafana's Prometheus variable query functions.
func fromTemplateQuery(q string) ([]string, error) {
	q = strings.TrimSpace(q)
	switch {
	case reLabelValues.MatchString(q):
		args := reLabelValues.FindStringSubmatch(q)[1]
		i := lastTopLevelComma(args)
		if i < 0 {
			if !reIdentifier.MatchString(strings.TrimSpace(args)) {
				return nil, fmt.Errorf("label_values(%s): want a label name or a selector and a label name", args)
			}
			return nil, nil // label_values(label): no metric
		}
		return fromGrafanaExpr(args[:i])
	case reQueryResult.MatchString(q):
		return fromGrafanaExpr(reQueryResult.FindStringSubmatch(q)[1])
	case reLabelNames.MatchString(q):
		if m := strings.TrimSpace(reLabelNames.FindStringSubmatch(q)[1]); m != "" {
			return fromGrafanaExpr(m)
		}
		return nil, nil
	case reMetrics.MatchString(q):
		// A regular expression over names; only a plain name names a metric.
		if m := strings.TrimSpace(reMetrics.FindStringSubmatch(q)[1]); reIdentifier.MatchString(m) {
			return []string{m}, nil
		}
		return nil, nil
	}
	return fromGrafanaExpr(q)
}

// lastTopLevelComma finds the comma that separates label_values' selector
// from its label: the last one outside braces, parentheses and quotes.
func lastTopLevelComma(s string) int {
	depth, last := 0, -1
	var quote rune
	esc := false
	for i, r := range s {
		switch {
		case quote != 0:
			if esc {
				esc = false
			} else if r == '\\' && quote != '`' {
				esc = true
			} else if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'' || r == '`':
			quote = r
		case r == '{' || r == '(' || r == '[':
			depth++
		case r == '}' || r == ')' || r == ']':
			depth--
		case r == ',' && depth == 0:
			last = i
		}
	}
	return last
}

// fromGrafanaExpr substitutes Grafana variables, then extracts names. A
// variable outside quotes and range brackets may stand for a number (topk)
// or a name (by ($label)); the number is tried first, then the variable's
// own name, so a variable in metric-name position shows up as that name
// instead of hiding a real metric.
func fromGrafanaExpr(expr string) ([]string, error) {
	names, err := FromExpr(substitute(expr, false))
	if err == nil {
		return names, nil
	}
	if alt, err2 := FromExpr(substitute(expr, true)); err2 == nil {
		return alt, nil
	}
	return nil, err
}

// reVariable matches Grafana's three variable syntaxes: ${name} and
// ${name:format}, [[name]] and [[name:format]], and $name.
var reVariable = regexp.MustCompile(`^(?:\$\{([A-Za-z0-9_]+)(?::[^}]*)?\}|\[\[([A-Za-z0-9_]+)(?::[^\]]*)?\]\]|\$([A-Za-z0-9_]+))`)

// substitute replaces every Grafana variable in expr by a stand-in chosen by
// the variable and its position: durations for interval variables and inside
// range brackets, a plain word inside string literals, and elsewhere a
// number (or, with asName, the variable's name).
func substitute(expr string, asName bool) string {
	var b strings.Builder
	var quote byte
	esc := false
	bracket := 0
	for i := 0; i < len(expr); {
		c := expr[i]
		if !esc && (c == '$' || strings.HasPrefix(expr[i:], "[[")) {
			if m := reVariable.FindStringSubmatch(expr[i:]); m != nil {
				name := m[1] + m[2] + m[3] // exactly one group matched
				b.WriteString(standIn(name, bracket > 0, quote != 0, asName))
				i += len(m[0])
				continue
			}
		}
		switch {
		case quote != 0:
			if esc {
				esc = false
			} else if c == '\\' && quote != '`' {
				esc = true
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '[':
			bracket++
		case c == ']':
			bracket--
		}
		b.WriteByte(c)
		i++
	}
	return b.String()
}

// standIn is what a variable is replaced by, given its name and position.
func standIn(name string, inRange, inString, asName bool) string {
	switch name {
	case "__interval_ms", "__range_ms", "__range_s", "__from", "__to":
		return "300"
	}
	if strings.HasPrefix(name, "__") && (strings.Contains(name, "interval") || strings.HasPrefix(name, "__range")) {
		return "5m"
	}
	switch {
	case inString:
		return "stand_in"
	case inRange:
		return "5m"
	case asName:
		return name
	}
	return "1"
}
