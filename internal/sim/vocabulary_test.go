package sim

import (
	"bytes"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/sim/vocab"
	"github.com/fleetd/fleetd/internal/simtest"
)

var update = flag.Bool("update", false, "rewrite testdata/vocabulary.txt from the reference text")

const (
	referencePath  = "../../docs/vendor/bikeep-parking-device-api.txt"
	vocabularyPath = "testdata/vocabulary.txt"
)

// TestVocabulary extracts the vocabulary from the reference text and
// compares it with testdata/vocabulary.txt; -update rewrites the file. The
// file is derived from the reference only: a stale or hand-edited copy
// fails here.
func TestVocabulary(t *testing.T) {
	ref, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vocab.Extract(ref)
	if err != nil {
		t.Fatalf("extract from %s: %v", referencePath, err)
	}
	want := v.Format()
	if *update {
		if err := os.WriteFile(vocabularyPath, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(vocabularyPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not what %s documents; run go test ./internal/sim -run TestVocabulary -update\n got:\n%s\nwant:\n%s",
			vocabularyPath, referencePath, got, want)
	}
}

func loadVocabulary(t *testing.T) vocab.Vocabulary {
	t.Helper()
	b, err := os.ReadFile(vocabularyPath)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vocab.Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", vocabularyPath, err)
	}
	return v
}

// TestWordsAreTheReferences checks every constant of words.go tagged
// "vocab: <field>" against the vocabulary, so that a misspelt word fails
// even if no test happens to make the simulator serve it.
func TestWordsAreTheReferences(t *testing.T) {
	v := loadVocabulary(t)
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "words.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	tagged := map[string]int{}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST || gd.Doc == nil {
			continue
		}
		var field string
		for _, line := range strings.Split(gd.Doc.Text(), "\n") {
			if rest, ok := strings.CutPrefix(line, "vocab: "); ok {
				field = strings.TrimSpace(rest)
			}
		}
		if field == "" {
			continue
		}
		if v.Values(field) == nil {
			t.Errorf("%s: tag names %q, which the reference does not document", fset.Position(gd.Pos()), field)
			continue
		}
		for _, spec := range gd.Specs {
			for _, val := range spec.(*ast.ValueSpec).Values {
				lit, ok := val.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Errorf("%s: a %s constant that is not a string literal", fset.Position(val.Pos()), field)
					continue
				}
				s, _ := strconv.Unquote(lit.Value)
				tagged[field]++
				if !v.Has(field, s) {
					t.Errorf("%s: %q is not a documented %s (the reference has %q)", fset.Position(lit.Pos()), s, field, v.Values(field))
				}
			}
		}
	}
	for _, field := range []string{"device.type", "device.state.value", "device.lock_state", "device.heartbeat_v2.health",
		"device.heartbeat_health", "device.hardware_state", "device.sleep_state", "device.power_save_strategy",
		"command.state.value", "command_request.command", "command_request.reason"} {
		if tagged[field] == 0 {
			t.Errorf("no constant of words.go is tagged %q: the simulator's words for it go unchecked", field)
		}
	}
	for _, s := range []string{string(unknownHardwareState), string(unknownHealth)} {
		if v.HasAnywhere(s) {
			t.Errorf("%q is meant to be undocumented, but the reference documents it", s)
		}
	}
}

// emitted collects the enum values the simulator served, per vocabulary
// field.
type emitted map[string]map[string]bool

func (e emitted) add(field string, v any) {
	s, ok := v.(string)
	if !ok {
		return // null: no value
	}
	if e[field] == nil {
		e[field] = map[string]bool{}
	}
	e[field][s] = true
}

func (e emitted) device(d map[string]any) {
	e.add("device.type", d["type"])
	e.add("device.lock_state", d["lock_state"])
	e.add("device.heartbeat_health", d["heartbeat_health"])
	e.add("device.power_save_strategy", d["power_save_strategy"])
	e.add("device.sleep_state", d["sleep_state"])
	e.add("device.hardware_state", d["hardware_state"])
	if st, ok := d["state"].(map[string]any); ok {
		e.add("device.state.value", st["value"])
	}
	if hb, ok := d["heartbeat_v2"].(map[string]any); ok {
		e.add("device.heartbeat_v2.health", hb["health"])
	}
	for name := range d["commands"].(map[string]any) {
		e.add("command_request.command", name)
	}
}

func (e emitted) command(c map[string]any) {
	e.add("command_request.command", c["name"])
	e.add("command.state.value", c["state"].(map[string]any)["value"])
}

// TestServedValuesAreTheReferences drives the simulator through everything
// it can show — every device type, every fault kind on every type it
// applies to, every command a device offers through its whole lifecycle,
// timeouts — and checks every enum value and command name it served
// against the vocabulary extracted from the reference. The only values
// outside it are the unknown_state fault's deliberate ones.
func TestServedValuesAreTheReferences(t *testing.T) {
	v := loadVocabulary(t)
	o := testOptions()
	o.Locations = 200
	o.SyncCureProbability = -1    // faults stay while commands run
	o.TokenTTL = 1000 * time.Hour // the clock runs for hours of commands
	h := newHarness(t, o)
	seen := emitted{}
	walk := func() {
		for _, l := range h.sim.Locations() {
			var list struct {
				Data []map[string]any `json:"data"`
			}
			simtest.MustUnmarshal(t, h.Get("/device/v1/locations/"+l.ID+"/devices"), &list)
			for _, d := range list.Data {
				seen.device(d)
			}
		}
	}
	walk()

	// Every fault kind on one device of every type it applies to.
	byType := map[string][]DeviceInfo{}
	for _, l := range h.sim.Locations() {
		for _, d := range h.sim.Devices(l.ID) {
			byType[d.Type] = append(byType[d.Type], d)
		}
	}
	used := map[string]bool{}
	for _, f := range FaultKinds() {
		for _, devs := range byType {
			for _, d := range devs {
				if !used[d.ID] && h.sim.SetFault(d.ID, f) == nil {
					used[d.ID] = true
					break
				}
			}
		}
	}
	walk()

	// Every command every type offers, faulty or not, to the end of its
	// lifecycle (dead devices time out into ERROR).
	future := t0.Add(24 * time.Hour).Format(time.RFC3339)
	var ids []string
	for _, devs := range byType {
		for _, d := range devs[:min(len(devs), 4)] { // unhealthy, dead, long dead, hardware error
			for _, name := range d.Commands {
				h.clock.Add(20 * time.Second) // past the lock/unlock throttle
				req := map[string]any{"command": name}
				switch name {
				case cmdForceUnlock:
					req["reason"], req["comment"] = reasonOther, "simulated maintenance"
				case cmdBook:
					req["timeout_at"] = future
				case cmdSyncDevice:
					req["power_cycle"] = true
				}
				status, body := h.Command(d.ID, req)
				if status != http.StatusOK {
					continue // refused (e.g. a dead device's throttle); the refusal carries no enum
				}
				var c map[string]any
				simtest.MustUnmarshal(t, body, &c)
				seen.command(c)
				ids = append(ids, c["id"].(string))
			}
		}
	}
	for i := range 70 {
		h.stepTo(time.Second)
		if i >= 4 {
			continue // the youngest have finished; the rest run to their timeout
		}
		for _, id := range ids[max(0, len(ids)-40):] { // the youngest: still in their lifecycle
			var c map[string]any
			simtest.MustUnmarshal(t, h.Get("/device/v1/commands/"+id), &c)
			seen.command(c)
		}
	}
	for _, id := range ids {
		var c map[string]any
		simtest.MustUnmarshal(t, h.Get("/device/v1/commands/"+id), &c)
		seen.command(c)
		// The reference names three kinds of event by prefix: REQUEST
		// (server), RESPONSE (hardware reply), STATE (device state).
		for _, e := range c["events"].([]any) {
			name, _ := e.(map[string]any)["name"].(string)
			p, _, _ := strings.Cut(name, "_")
			if p != "REQUEST" && p != "RESPONSE" && p != "STATE" {
				t.Errorf("command %s event %q has no documented prefix", c["name"], name)
			}
		}
	}
	walk()

	deliberate := map[string]bool{string(unknownHardwareState): true, string(unknownHealth): true}
	var fields []string
	for f := range seen {
		fields = append(fields, f)
	}
	slices.Sort(fields)
	for _, field := range fields {
		for s := range seen[field] {
			switch {
			case v.Has(field, s):
			case deliberate[s] && strings.Contains(field, "health") || deliberate[s] && field == "device.hardware_state":
			default:
				t.Errorf("served %s %q, which the reference does not document (it has %q)", field, s, v.Values(field))
			}
		}
		var missing []string
		for _, s := range v.Values(field) {
			if !seen[field][s] {
				missing = append(missing, strconv.Quote(s))
			}
		}
		t.Logf("%s: served %d of %d documented values; never: %s", field, len(seen[field])-countDeliberate(seen[field], deliberate),
			len(v.Values(field)), strings.Join(missing, " "))
	}
	for _, s := range []string{string(unknownHardwareState), string(unknownHealth)} {
		if !seen["device.hardware_state"][s] && !seen["device.heartbeat_v2.health"][s] {
			t.Errorf("the unknown_state fault never served %q", s)
		}
	}
	// What the simulator must show for fleetd's tests to mean anything.
	for field, must := range map[string][]string{
		"device.type":                v.Values("device.type"),
		"device.heartbeat_v2.health": v.Values("device.heartbeat_v2.health"),
		"device.hardware_state":      {"NORMAL", "DISABLED", "ERROR", "NOT_RESPONDING"},
		"device.lock_state":          v.Values("device.lock_state"),
		"device.sleep_state":         v.Values("device.sleep_state"),
		"device.power_save_strategy": v.Values("device.power_save_strategy"),
		"command.state.value":        v.Values("command.state.value"),
		"command_request.command":    v.Values("command_request.command"),
	} {
		for _, s := range must {
			if !seen[field][s] {
				t.Errorf("%s %q was never served", field, s)
			}
		}
	}
}

func countDeliberate(m map[string]bool, deliberate map[string]bool) int {
	n := 0
	for s := range m {
		if deliberate[s] {
			n++
		}
	}
	return n
}

// TestCopriWordsAreTheReferences checks the simulator's COPRI booking and
// lock states against the booking_update reference, which documents them
// as `state=…` and `lock_state=…`. (defect and the service states come from
// the project's API notes, which the reference does not cover.)
func TestCopriWordsAreTheReferences(t *testing.T) {
	ref, err := os.ReadFile("../../docs/vendor/copri-booking-update.txt")
	if err != nil {
		t.Fatal(err)
	}
	documented := func(key string) []string {
		var out []string
		for _, m := range regexp.MustCompile("`"+key+`=([a-z]+)`+"`").FindAllStringSubmatch(string(ref), -1) {
			if !slices.Contains(out, m[1]) {
				out = append(out, m[1])
			}
		}
		slices.Sort(out)
		return out
	}
	states, locks := documented("state"), documented("lock_state")
	if !slices.Equal(states, []string{"available", "canceled", "occupied"}) {
		t.Fatalf("booking states in the reference: %q", states)
	}
	if !slices.Equal(locks, []string{"locked", "locking", "unlocked"}) {
		t.Fatalf("lock states in the reference: %q", locks)
	}
	for _, s := range []bookingState{copriOccupied, copriAvailable} {
		if !slices.Contains(states, string(s)) {
			t.Errorf("booking state %q is not documented", s)
		}
	}
	for _, l := range []copriLock{copriLocked, copriUnlocked} {
		if !slices.Contains(locks, string(l)) {
			t.Errorf("lock state %q is not documented", l)
		}
	}
}
