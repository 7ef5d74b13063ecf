package simcheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/sim/vocab"
)

// vocabularyPath is the vocabulary extracted from the reference text by
// internal/sim's TestVocabulary (which also proves it up to date).
const vocabularyPath = "../sim/testdata/vocabulary.txt"

// clientTypesPath is the file that declares the Bikeep client's enums;
// recordEnumsPath declares the command names the client's constants name.
const (
	clientTypesPath = "../clients/bikeep/types.go"
	recordEnumsPath = "../record/enums.go"
)

func loadVocabulary(t *testing.T) vocab.Vocabulary {
	t.Helper()
	b, err := os.ReadFile(vocabularyPath)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vocab.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// clientConstants parses the client's types.go (and record's enums.go,
// which holds the command names) and returns their string constants
// grouped by their declared type ("Cmd" for the untyped command names), so
// that a constant added to the client is checked without this test having
// to list it.
func clientConstants(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, path := range []string{clientTypesPath, recordEnumsPath} {
		addStringConstants(t, path, out)
	}
	return out
}

// addStringConstants adds the string-literal constants of the Go file at
// path to out, by group.
func addStringConstants(t *testing.T, path string, out map[string][]string) {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			group := ""
			if id, ok := vs.Type.(*ast.Ident); ok {
				group = id.Name
			} else if strings.HasPrefix(vs.Names[0].Name, "Cmd") {
				group = "Cmd"
			}
			for _, val := range vs.Values {
				lit, ok := val.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING || group == "" {
					continue
				}
				s, _ := strconv.Unquote(lit.Value)
				out[group] = append(out[group], s)
			}
		}
	}
}

// TestClientConstantsAreTheReferences compares the Bikeep client's enum
// constants with the vocabulary extracted from the reference text, in both
// directions: a misspelt or invented constant fails, and so does a
// documented value the client has no constant for. The simulator is checked
// against the same vocabulary in internal/sim, so the two cannot agree on a
// misspelling.
func TestClientConstantsAreTheReferences(t *testing.T) {
	v := loadVocabulary(t)
	consts := clientConstants(t)
	fields := map[string]string{
		"DeviceType":        "device.type",
		"StateValue":        "device.state.value",
		"LockState":         "device.lock_state",
		"Health":            "device.heartbeat_v2.health",
		"HardwareState":     "device.hardware_state",
		"SleepState":        "device.sleep_state",
		"PowerSaveStrategy": "device.power_save_strategy",
		"CommandStateValue": "command.state.value",
		"Cmd":               "command_request.command",
	}
	for group, field := range fields {
		t.Run(group, func(t *testing.T) {
			got := consts[group]
			if len(got) == 0 {
				t.Fatalf("no %s constants in %s", group, clientTypesPath)
			}
			for _, s := range got {
				if !v.Has(field, s) {
					t.Errorf("client constant %q is not a documented %s (the reference has %q)", s, field, v.Values(field))
				}
			}
			for _, s := range v.Values(field) {
				if !slices.Contains(got, s) {
					t.Errorf("documented %s %q has no client constant", field, s)
				}
			}
		})
	}
	for group := range consts {
		if _, ok := fields[group]; !ok && group != "LocationType" {
			t.Errorf("client constants of type %s are compared with nothing: map them to a vocabulary field", group)
		}
	}
}

// TestClientKnownIsTheReference checks the client's Known methods, which
// decide unknown_state, against the vocabulary: every documented value is
// known, and nothing else is (an undocumented value must be reported).
func TestClientKnownIsTheReference(t *testing.T) {
	v := loadVocabulary(t)
	known := map[string]func(string) bool{
		"device.type":                func(s string) bool { return bikeep.DeviceType(s).Known() },
		"device.state.value":         func(s string) bool { return bikeep.StateValue(s).Known() },
		"device.lock_state":          func(s string) bool { return bikeep.LockState(s).Known() },
		"device.heartbeat_v2.health": func(s string) bool { return bikeep.Health(s).Known() },
		"device.hardware_state":      func(s string) bool { return bikeep.HardwareState(s).Known() },
		"device.sleep_state":         func(s string) bool { return bikeep.SleepState(s).Known() },
		"device.power_save_strategy": func(s string) bool { return bikeep.PowerSaveStrategy(s).Known() },
		"command.state.value":        func(s string) bool { return bikeep.CommandStateValue(s).Known() },
	}
	for field, isKnown := range known {
		t.Run(field, func(t *testing.T) {
			vals := v.Values(field)
			if len(vals) == 0 {
				t.Fatalf("the vocabulary has no %s", field)
			}
			for _, s := range vals {
				if !isKnown(s) {
					t.Errorf("documented %q is not Known()", s)
				}
				// Near misses of a documented value must not be known.
				for _, miss := range []string{s + "X", strings.ToLower(s), s + " "} {
					if miss != s && !v.Has(field, miss) && isKnown(miss) {
						t.Errorf("undocumented %q is Known()", miss)
					}
				}
			}
		})
	}
}
