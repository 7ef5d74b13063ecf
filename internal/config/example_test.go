package config

import (
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// example.yml promises "every key": a key added to the schema must be added
// there, with its comment, or operators never learn of it. Alternatives
// (omitempty keys such as token_file next to client_secret) may be shown as
// a commented-out line instead.
func TestExampleShowsEveryKey(t *testing.T) {
	b, err := os.ReadFile("example.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, missing := range missingKeys(&doc, string(b)) {
		t.Errorf("example.yml does not show %s", missing)
	}
}

func TestMissingKeysFindsAnOmittedKey(t *testing.T) {
	tests := []struct {
		name, doc string
		want      string
	}{
		{"nested key", "remediation: {enabled: true}\n", "remediation.forget_after"},
		{"top-level key", "bikeep: {}\n", "metrics"},
		{"list element", "copri: [{name: a}]\n", "copri[0].hw_id"},
		{"alternative neither set nor commented", "bikeep: {client_secret: x}\n", "bikeep.token_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte(tt.doc), &doc); err != nil {
				t.Fatal(err)
			}
			got := missingKeys(&doc, tt.doc)
			for _, m := range got {
				if m == tt.want {
					return
				}
			}
			t.Errorf("missingKeys(%q) = %q, want it to include %q", tt.doc, got, tt.want)
		})
	}
	t.Run("alternative shown as a comment", func(t *testing.T) {
		text := "bikeep:\n  client_secret: x\n  # token_file: /run/secrets/t\n"
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
			t.Fatal(err)
		}
		for _, m := range missingKeys(&doc, text) {
			if m == "bikeep.token_file" {
				t.Errorf("missingKeys reports %s although it is shown commented out", m)
			}
		}
	})
}

// missingKeys lists the key paths of Config that doc (whose source is text)
// does not set. Leaf types (Locations, Rate) are not looked into; a list is
// checked element by element.
func missingKeys(doc *yaml.Node, text string) []string {
	var out []string
	var walk func(n *yaml.Node, t reflect.Type, path string)
	walk = func(n *yaml.Node, t reflect.Type, path string) {
		switch {
		case isLeaf(t):
		case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
			for i, e := range n.Content {
				walk(e, t.Elem(), path+"["+strconv.Itoa(i)+"]")
			}
		case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
			fs := yamlFields(t)
			for _, name := range fs.names {
				p := name
				if path != "" {
					p = path + "." + name
				}
				v := mappingValue(n, name)
				if v == nil {
					_, opts, _ := strings.Cut(fs.byName[name].Tag.Get("yaml"), ",")
					if opts == "omitempty" && commentedOut(text, name) {
						continue
					}
					out = append(out, p)
					continue
				}
				walk(v, fs.byName[name].Type, p)
			}
		}
	}
	root := doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	walk(root, reflect.TypeFor[Config](), "")
	return out
}

func mappingValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func commentedOut(text, key string) bool {
	return regexp.MustCompile(`(?m)^\s*#\s*` + regexp.QuoteMeta(key) + `:`).MatchString(text)
}
