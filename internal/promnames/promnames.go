// Package promnames finds the metric names that Prometheus rule files and
// Grafana dashboards query, so that a test can hold them against what fleetd
// actually exports: a renamed metric must fail a build, not silently empty a
// panel or disarm an alert.
//
// Names come from the PromQL parser, never from regular expressions over the
// query text, so label values, function names and keywords are never
// mistaken for metrics.
package promnames

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Use is one metric name used by one rule or dashboard query.
type Use struct {
	// Metric is the metric name.
	Metric string
	// File is the path the query was read from.
	File string
	// Where names the query inside the file: the alert or recording rule
	// name, "<panel title>/<refId>" for a dashboard target, or
	// "templating <variable>" for a dashboard variable.
	Where string
}

// String formats u for test failures: file, place, metric.
func (u Use) String() string { return fmt.Sprintf("%s: %s: %s", u.File, u.Where, u.Metric) }

// FromExpr returns every metric name that expr selects, sorted and without
// duplicates: the name of each vector selector and each equality matcher on
// __name__ ({__name__="m"}). Regular-expression matchers on __name__ name no
// particular metric and are ignored.
func FromExpr(expr string) ([]string, error) {
	e, err := parse(expr)
	if err != nil {
		return nil, err
	}
	names := map[string]struct{}{}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		if vs.Name != "" {
			names[vs.Name] = struct{}{}
		}
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual && m.Value != "" {
				names[m.Value] = struct{}{}
			}
		}
		return nil
	})
	return slices.Sorted(maps.Keys(names)), nil
}

// parse parses a PromQL expression, accepting experimental functions (a
// dashboard may use them) without flipping the parser's package-level switch.
func parse(expr string) (parser.Expr, error) {
	fns := make(map[string]*parser.Function, len(parser.Functions))
	for name, f := range parser.Functions {
		c := *f
		c.Experimental = false
		fns[name] = &c
	}
	p := parser.NewParser(expr, parser.WithFunctions(fns))
	defer p.Close()
	e, err := p.ParseExpr()
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", oneLine(expr), err)
	}
	return e, nil
}

// Synthetic reports whether Prometheus itself makes series of this name
// (scrape health and alert state), so no exporter has to provide it.
func Synthetic(name string) bool {
	switch name {
	case "up", "ALERTS", "ALERTS_FOR_STATE":
		return true
	}
	return strings.HasPrefix(name, "scrape_")
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
