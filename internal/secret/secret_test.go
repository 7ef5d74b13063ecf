package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestStringNeverPrints(t *testing.T) {
	const plain = "hunter2-very-secret"
	s := String(plain)
	if s.Reveal() != plain {
		t.Fatalf("Reveal() = %q", s.Reveal())
	}
	var outs []string
	for _, verb := range []string{"%s", "%v", "%+v", "%#v", "%q", "%x", "%X", "%d"} {
		outs = append(outs, fmt.Sprintf(verb, s))
	}
	outs = append(outs, fmt.Sprint(struct{ P String }{s}), fmt.Sprintf("%+v", &struct{ P String }{s}))
	var jb bytes.Buffer
	enc := json.NewEncoder(&jb)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]any{"p": s}); err != nil {
		t.Fatal(err)
	}
	outs = append(outs, jb.String())
	y, err := yaml.Marshal(struct {
		P String `yaml:"p"`
	}{s})
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, string(y))
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "p", s, slog.Group("g", "p", s))
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "p", s)
	outs = append(outs, buf.String())
	for _, o := range outs {
		if strings.Contains(o, plain) || strings.Contains(o, fmt.Sprintf("%x", plain)) {
			t.Errorf("secret leaked: %s", o)
		}
		if !strings.Contains(o, Masked) {
			t.Errorf("mask missing: %s", o)
		}
	}
}

func TestEmptyStringPrintsEmpty(t *testing.T) {
	if got := String("").String(); got != "" {
		t.Fatalf("empty secret printed %q", got)
	}
	if !String("").IsZero() || String("x").IsZero() {
		t.Fatal("IsZero wrong")
	}
}
