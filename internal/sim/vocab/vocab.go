// Package vocab extracts the enum vocabulary of the Bikeep Parking Device
// API — every documented value of every enum field, and the command names —
// from the vendor's reference text (docs/vendor/bikeep-parking-device-api.txt),
// and reads and writes it as a small text file.
//
// It exists so that the simulator and the client can both be checked
// against the reference itself rather than against each other. It depends
// on neither.
//
// The reference is rendered documentation: per endpoint, a flat list of
// fields ("name" line, type line, optional "deprecated", optional enum
// values one per line, a description), followed by an example JSON payload.
// Nesting is not shown in the list, so a field's path is resolved against
// the example's key paths. Some enums lost the separators between their
// values in the rendering ("LOCKEDUNLOCKED"); those are split with
// gluedRuns, whose pieces must concatenate back to the text's line exactly.
package vocab

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Header starts every formatted vocabulary.
const Header = `# Bikeep Parking Device API vocabulary: the documented values of every enum field and the command
# names, extracted from docs/vendor/bikeep-parking-device-api.txt. Generated; do not edit:
#   go test ./internal/sim -run TestVocabulary -update
# One value per line: <field> <Go-quoted value>. "" is the empty string.
`

// Vocabulary is the documented values per field, e.g. "device.type" →
// GUARD, BIKE_DOCK, …; fields and values keep the reference's order.
type Vocabulary struct {
	fields []string
	values map[string][]string
}

// Fields lists the fields in the reference's order.
func (v Vocabulary) Fields() []string { return slices.Clone(v.fields) }

// Values lists the documented values of field (nil for an unknown field).
func (v Vocabulary) Values(field string) []string { return slices.Clone(v.values[field]) }

// Has reports whether value is documented for field.
func (v Vocabulary) Has(field, value string) bool { return slices.Contains(v.values[field], value) }

// HasAnywhere reports whether value is documented for any field.
func (v Vocabulary) HasAnywhere(value string) bool {
	for _, f := range v.fields {
		if v.Has(f, value) {
			return true
		}
	}
	return false
}

func (v *Vocabulary) add(field, value string) {
	if v.values == nil {
		v.values = map[string][]string{}
	}
	if _, ok := v.values[field]; !ok {
		v.fields = append(v.fields, field)
	}
	if !slices.Contains(v.values[field], value) {
		v.values[field] = append(v.values[field], value)
	}
}

// Format renders v as the vocabulary file: Header, then one line per value.
func (v Vocabulary) Format() []byte {
	var b bytes.Buffer
	b.WriteString(Header)
	for _, f := range v.fields {
		for _, val := range v.values[f] {
			b.WriteString(f)
			b.WriteByte(' ')
			b.WriteString(strconv.Quote(val))
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// Parse reads a file written by Format.
func Parse(b []byte) (Vocabulary, error) {
	var v Vocabulary
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		field, quoted, ok := strings.Cut(line, " ")
		if !ok || field == "" {
			return Vocabulary{}, fmt.Errorf("line %d: want <field> <quoted value>, got %q", n, line)
		}
		val, err := strconv.Unquote(quoted)
		if err != nil {
			return Vocabulary{}, fmt.Errorf("line %d: value %s: %w", n, quoted, err)
		}
		v.add(field, val)
	}
	if err := sc.Err(); err != nil {
		return Vocabulary{}, err
	}
	if len(v.fields) == 0 {
		return Vocabulary{}, errors.New("empty vocabulary")
	}
	return v, nil
}

// gluedRuns splits the enum lines whose values the rendering glued together.
// Only the boundaries are supplied here: Extract checks that the pieces
// concatenate to exactly the text's line, so no letter can be invented.
func gluedRuns() map[string][]string {
	return map[string][]string{
		"NOT_SENTSENTERRORRECEIVEDSUCCESS": {"NOT_SENT", "SENT", "ERROR", "RECEIVED", "SUCCESS"},
		"LIGHT_SLEEPDEEP_SLEEP":            {"LIGHT_SLEEP", "DEEP_SLEEP"},
		"HEALTHYUNHEALTHYDEADLONG_DEAD":    {"HEALTHY", "UNHEALTHY", "DEAD", "LONG_DEAD"},
		"HEALTHYUNHEALTHYDEAD":             {"HEALTHY", "UNHEALTHY", "DEAD"},
		"LOCKEDUNLOCKED":                   {"LOCKED", "UNLOCKED"},
		"NONEREMOTE_WAKEUPLOCAL_WAKEUP":    {"NONE", "REMOTE_WAKEUP", "LOCAL_WAKEUP"},
	}
}

var (
	fieldRE    = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
	upperRE    = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
	commandRE  = regexp.MustCompile(`^[a-z]+(-[a-z]+)*$`)
	endpointRE = regexp.MustCompile(`^/[a-z-]+/v\d+/\S*$`)
	statusRE   = regexp.MustCompile(`^\d{3} response$`)
	emptyRE    = regexp.MustCompile(`(?i)\bempty string means\b`)
	listRE     = regexp.MustCompile(`Supported commands: ([a-z, -]+)\.`)
)

func isType(s string) bool {
	switch s {
	case "string", "object", "number", "boolean", "integer", "[object]", "[string]":
		return true
	}
	return false
}

// kinds maps an endpoint's path line to the resource its response
// describes; the request body of the command POST is "command_request".
func kinds() map[string]string {
	return map[string]string{
		"/device/v1/commands/{command_id}":           "command",
		"/device/v1/devices/{device_id}":             "device",
		"/device/v1/devices/{device_id}/commands":    "command",
		"/device/v1/locations/{location_id}/devices": "device",
	}
}

// field is one enum field of a block, before its path is resolved.
type field struct {
	name   string
	parent string // the last object-typed field before it (a guess)
	values []string
	line   int
}

// Extract reads the reference text and returns its vocabulary. It fails,
// rather than guess, on anything it cannot place: an unknown endpoint, a
// glued enum line without known boundaries, a field whose path the example
// payload does not settle, or two endpoints documenting one field
// differently.
func Extract(ref []byte) (Vocabulary, error) {
	lines := strings.Split(strings.ReplaceAll(string(ref), "\r\n", "\n"), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	var (
		v       Vocabulary
		seen    = map[string]string{} // field → first definition, for consistency
		kind    string                // resource of the current block
		path    string                // current endpoint
		request bool                  // inside "Request Body"
		fields  []field
		parent  string
		inBlock bool
		prose   []string // command names listed in prose
	)
	flush := func(example map[string]any) error {
		defer func() { fields, parent, inBlock = nil, "", false }()
		if len(fields) == 0 {
			return nil
		}
		paths := keyPaths("", example, nil)
		for _, f := range fields {
			p, err := resolve(f, paths)
			if err != nil {
				return fmt.Errorf("line %d: %s: %w", f.line, path, err)
			}
			p = strings.TrimPrefix(p, "data.") // the list wraps devices in data[]
			key := kind + "." + p
			def := strings.Join(f.values, ",")
			if prev, ok := seen[key]; ok && prev != def {
				return fmt.Errorf("line %d: %s documented as %s here and as %s elsewhere", f.line, key, def, prev)
			}
			seen[key] = def
			for _, val := range f.values {
				v.add(key, val)
			}
		}
		return nil
	}
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if m := listRE.FindStringSubmatch(l); m != nil {
			for _, c := range strings.Split(m[1], ",") {
				prose = append(prose, strings.TrimSpace(c))
			}
		}
		switch {
		case endpointRE.MatchString(l) && i > 0 && lines[i-1] != "GET" && lines[i-1] != "POST":
			k, ok := kinds()[l]
			if !ok {
				return Vocabulary{}, fmt.Errorf("line %d: endpoint %s: not one this extractor knows; add it to kinds", i+1, l)
			}
			path, kind, request, inBlock = l, k, false, false
			continue
		case l == "Request Body required":
			request, inBlock = true, true
			continue
		case statusRE.MatchString(l):
			inBlock = kind != ""
			continue
		case l == "{" && inBlock:
			end, example, err := readExample(lines, i)
			if err != nil {
				return Vocabulary{}, fmt.Errorf("line %d: example payload: %w", i+1, err)
			}
			saved := kind
			if request {
				kind = "command_request"
			}
			if err := flush(example); err != nil {
				return Vocabulary{}, err
			}
			kind, request = saved, false
			i = end
			continue
		}
		if !inBlock || !fieldRE.MatchString(l) || i+1 >= len(lines) || !isType(lines[i+1]) {
			continue
		}
		name, typ := l, lines[i+1]
		j := i + 2
		if j < len(lines) && lines[j] == "deprecated" {
			j++
		}
		if typ == "object" || typ == "[object]" {
			parent = name
			i = j - 1
			continue
		}
		if typ != "string" {
			i = j - 1
			continue
		}
		var raw []string
		for ; j < len(lines); j++ {
			c := lines[j]
			if !upperRE.MatchString(c) && !commandRE.MatchString(c) {
				break
			}
			if j+1 < len(lines) && isType(lines[j+1]) {
				break // the next field's name, not a value
			}
			raw = append(raw, c)
		}
		var values []string
		switch len(raw) {
		case 0:
		case 1:
			pieces, ok := gluedRuns()[raw[0]]
			if !ok {
				return Vocabulary{}, fmt.Errorf("line %d: field %s has the single enum line %q: its values may be glued together; add its boundaries to gluedRuns", i+3, name, raw[0])
			}
			if strings.Join(pieces, "") != raw[0] {
				return Vocabulary{}, fmt.Errorf("gluedRuns: pieces %v do not spell %q", pieces, raw[0])
			}
			values = pieces
		default:
			values = raw
		}
		if j < len(lines) && emptyRE.MatchString(lines[j]) {
			values = append([]string{""}, values...)
		}
		if len(values) > 0 {
			fields = append(fields, field{name: name, parent: parent, values: values, line: i + 1})
		}
		i = j - 1
	}
	if len(v.fields) == 0 {
		return Vocabulary{}, errors.New("no enum field found: is this the Parking Device reference?")
	}
	if cmds := v.values["command_request.command"]; len(prose) > 0 && !sameSet(prose, cmds) {
		return Vocabulary{}, fmt.Errorf("the prose lists commands %v, the command enum %v", prose, cmds)
	}
	return v, nil
}

// readExample parses the JSON payload whose "{" is lines[start]; it returns
// the index of its last line.
func readExample(lines []string, start int) (int, map[string]any, error) {
	depth := 0
	for i := start; i < len(lines); i++ {
		depth += strings.Count(lines[i], "{") + strings.Count(lines[i], "[") -
			strings.Count(lines[i], "}") - strings.Count(lines[i], "]")
		if depth == 0 {
			var doc map[string]any
			if err := json.Unmarshal([]byte(strings.Join(lines[start:i+1], "\n")), &doc); err != nil {
				return 0, nil, err
			}
			return i, doc, nil
		}
	}
	return 0, nil, errors.New("not closed")
}

// keyPaths lists the dotted key paths of an example payload; an array
// contributes its first element's keys.
func keyPaths(prefix string, v any, out []string) []string {
	switch x := v.(type) {
	case map[string]any:
		for k, sub := range x {
			out = append(out, prefix+k)
			out = keyPaths(prefix+k+".", sub, out)
		}
	case []any:
		if len(x) > 0 {
			out = keyPaths(prefix, x[0], out)
		}
	}
	return out
}

// resolve finds the example path of f: the only path ending in its name, or
// among several the one under its guessed parent.
func resolve(f field, paths []string) (string, error) {
	var cands []string
	for _, p := range paths {
		if p == f.name || strings.HasSuffix(p, "."+f.name) {
			cands = append(cands, p)
		}
	}
	switch len(cands) {
	case 0:
		return "", fmt.Errorf("field %s is not in the example payload", f.name)
	case 1:
		return cands[0], nil
	}
	for _, p := range cands {
		if strings.HasSuffix(p, f.parent+"."+f.name) {
			return p, nil
		}
	}
	slices.Sort(cands)
	return "", fmt.Errorf("field %s could be any of %v", f.name, cands)
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Example returns an example payload of the reference: the request body of
// endpoint when request is set, else its 200 response. endpoint is the path
// as the reference writes it, e.g. "/device/v1/devices/{device_id}".
func Example(ref []byte, endpoint string, request bool) (map[string]any, error) {
	lines := strings.Split(strings.ReplaceAll(string(ref), "\r\n", "\n"), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	marker := "200 response"
	if request {
		marker = "Request Body required"
	}
	in, found := false, false
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if endpointRE.MatchString(l) && i > 0 && lines[i-1] != "GET" && lines[i-1] != "POST" {
			in = l == endpoint
			found = false
			continue
		}
		if !in {
			continue
		}
		if l == marker {
			found = true
			continue
		}
		if found && l == "{" {
			_, doc, err := readExample(lines, i)
			if err != nil {
				return nil, fmt.Errorf("%s: example payload: %w", endpoint, err)
			}
			return doc, nil
		}
	}
	return nil, fmt.Errorf("the reference has no %s example for %s", marker, endpoint)
}
