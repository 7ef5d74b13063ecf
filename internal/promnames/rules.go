package promnames

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"
)

// ruleFile is the part of a Prometheus rule file that names metrics.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert  string `yaml:"alert"`
			Record string `yaml:"record"`
			Expr   string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// FromRuleFile returns the metric names used by every alerting and recording
// rule in the Prometheus rule file at path, in file order; Where is the
// alert or record name.
func FromRuleFile(path string) ([]Use, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rule file: %w", err)
	}
	var f ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("rule file %s: %w", path, err)
	}
	var uses []Use
	for _, g := range f.Groups {
		for i, r := range g.Rules {
			where := r.Alert
			if where == "" {
				where = r.Record
			}
			if where == "" {
				where = fmt.Sprintf("group %s rule %d", g.Name, i+1)
			}
			if r.Expr == "" {
				return nil, fmt.Errorf("rule file %s: %s: empty expr", path, where)
			}
			names, err := FromExpr(r.Expr)
			if err != nil {
				return nil, fmt.Errorf("rule file %s: %s: %w", path, where, err)
			}
			for _, n := range names {
				uses = append(uses, Use{Metric: n, File: path, Where: where})
			}
		}
	}
	return uses, nil
}
