package config

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The checker walks the YAML node tree alongside the Go types before
// anything is decoded. yaml.v3's KnownFields would stop at type names and
// line numbers ("field foo not found in type config.Bikeep"); walking the
// tree ourselves gives the YAML path of every problem, reports all of them at
// once, expands ${ENV} only in values that are actually used, and keeps
// values out of messages when they came from the environment.
//
// A value the checker rejects is replaced by a YAML null (the default stays)
// and a key it rejects is dropped, so the document still decodes and the
// rest of the file is validated in the same run: an operator sees a bad rate
// and a bad cron spec together, not one after the other. The checker also
// remembers the line of every key path, so that problems found later (secret
// files, validation) carry a line number too.

var durationType = reflect.TypeFor[time.Duration]()

// maxVisits bounds the walk so that alias-heavy input cannot blow it up.
const maxVisits = 100_000

// leaf is implemented by types that decode a YAML value as a whole with
// their own UnmarshalYAML (Locations, Rate); the checker does not look inside.
type leaf interface{ yamlLeaf() }

var leafType = reflect.TypeFor[leaf]()

func isLeaf(t reflect.Type) bool {
	return t.Implements(leafType) || reflect.PointerTo(t).Implements(leafType)
}

// valueError is returned by leaf unmarshalers, so the checker can hide the
// value when it came from the environment.
type valueError struct {
	want string
	got  string
}

func (e *valueError) Error() string { return fmt.Sprintf("want %s, got %q", e.want, e.got) }

type checker struct {
	lookup func(string) (string, bool)
	errs   []error
	// expanded records the scalars already expanded (an alias shares its
	// anchor's node; expanding twice would turn "$$$$" into "$") and whether
	// expansion changed them.
	expanded map[*yaml.Node]bool
	visits   int
	// tooLarge is set when the walk gave up; the document is not decoded.
	tooLarge bool
	// lines maps every key path present in the file ("copri[0].name") to
	// its line; bad holds the paths whose value was rejected (and nulled).
	lines map[string]int
	bad   map[string]bool
	// aliasLine, while walking through an alias, is the alias's line: a
	// problem in copri[1] written as "- *op" belongs where *op is.
	aliasLine int
}

func newChecker(lookup func(string) (string, bool)) *checker {
	return &checker{lookup: lookup, expanded: map[*yaml.Node]bool{}, lines: map[string]int{}, bad: map[string]bool{}}
}

// problem records "path: msg (line N)".
func (c *checker) problem(path string, line int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	c.errs = append(c.errs, fmt.Errorf("%s (line %d)", msg, line))
}

// reject records a problem with the value at path and nulls the node, so
// that decoding keeps the default there and validation says nothing more
// about path.
func (c *checker) reject(n *yaml.Node, path string, format string, args ...any) {
	c.problem(path, n.Line, format, args...)
	c.bad[path] = true
	*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
}

// record remembers the line of a key path (the first time it is seen).
func (c *checker) record(path string, line int) {
	if c.aliasLine != 0 {
		line = c.aliasLine
	}
	if _, ok := c.lines[path]; !ok {
		c.lines[path] = line
	}
}

// lineOf returns the line of path, or of its nearest ancestor present in
// the file (a required key that is missing is reported where its block
// is); 0 when none is.
func (c *checker) lineOf(path string) int {
	for path != "" {
		if l, ok := c.lines[path]; ok {
			return l
		}
		path = parentPath(path)
	}
	return 0
}

// lineFor picks the line of a keyError: its own key's when the file has
// it, unless it is a block whose more telling keys are in about ("bikeep:
// credentials ..." points at the client_secret_file line); else the first
// key of about in the file; else the nearest ancestor of its key.
func (c *checker) lineFor(e *keyError) int {
	own, ok := c.lines[e.path]
	for _, k := range e.about {
		l, present := c.lines[k]
		if !present {
			continue
		}
		if !ok || strings.HasPrefix(k, e.path+".") {
			return l
		}
	}
	if ok {
		return own
	}
	return c.lineOf(e.path)
}

// covered reports whether path or one of its ancestors had its value
// rejected: the problem is already reported, and the default that replaced
// the value would only cause a confusing second one.
func (c *checker) covered(path string) bool {
	for path != "" {
		if c.bad[path] {
			return true
		}
		path = parentPath(path)
	}
	return false
}

// parentPath strips the last ".key" or "[i]" of a path.
func parentPath(path string) string {
	if i := strings.LastIndexAny(path, ".["); i >= 0 {
		return path[:i]
	}
	return ""
}

// visit counts a node against maxVisits; past it, the walk gives up and
// the document is not decoded at all.
func (c *checker) visit(n *yaml.Node, path string) bool {
	c.visits++
	if c.visits <= maxVisits {
		return true
	}
	if !c.tooLarge {
		c.problem(path, n.Line, "document too large")
		c.tooLarge = true
	}
	return false
}

func (c *checker) walk(n *yaml.Node, t reflect.Type, path string) {
	if !c.visit(n, path) {
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias != nil {
			outer := c.aliasLine
			if outer == 0 {
				c.aliasLine = n.Line
			}
			c.walk(n.Alias, t, path)
			c.aliasLine = outer
		}
		return
	}
	if isNull(n) {
		return // null means "not set": the default stays
	}
	switch {
	case isLeaf(t):
		c.leaf(n, t, path)
	case t.Kind() == reflect.Pointer: // an optional section
		c.walk(n, t.Elem(), path)
	case t.Kind() == reflect.Struct:
		c.mapping(n, t, path, map[string]*yaml.Node{})
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			c.reject(n, path, "want a list, got %s", kindName(n))
			return
		}
		for i, e := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			c.record(p, e.Line)
			c.walk(e, t.Elem(), p)
		}
	default:
		c.scalar(n, t, path)
	}
}

func (c *checker) mapping(n *yaml.Node, t reflect.Type, path string, seen map[string]*yaml.Node) {
	if n.Kind != yaml.MappingNode {
		c.reject(n, path, "want a mapping, got %s", kindName(n))
		return
	}
	fields := yamlFields(t)
	// Pairs the decoder would choke on (or misread) are dropped after the
	// loop; the problem is reported either way.
	var drop []int
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			if !c.merge(v, t, path) {
				drop = append(drop, i)
			}
			continue
		}
		if k.Kind != yaml.ScalarNode {
			c.problem(path, k.Line, "want a plain key, got %s", kindName(k))
			drop = append(drop, i)
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			c.errs = append(c.errs, fmt.Errorf("%sduplicate key %q (line %d, first at line %d)", prefix(path), k.Value, k.Line, prev.Line))
			drop = append(drop, i)
			continue
		}
		seen[k.Value] = k
		f, ok := fields.byName[k.Value]
		if !ok {
			c.unknownKey(k, fields.names, path)
			drop = append(drop, i)
			continue
		}
		p := joinPath(path, k.Value)
		c.record(p, k.Line)
		c.walk(v, f.Type, p)
	}
	for j := len(drop) - 1; j >= 0; j-- {
		n.Content = append(n.Content[:drop[j]], n.Content[drop[j]+2:]...)
	}
}

// merge checks the mappings of a YAML merge key (<<: *anchor) as part of
// the mapping that holds it. Merged keys may be overridden, so they get their
// own duplicate tracking. It reports false when the merge key must go.
func (c *checker) merge(v *yaml.Node, t reflect.Type, path string) bool {
	if v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	switch v.Kind {
	case yaml.MappingNode:
		c.mapping(v, t, path, map[string]*yaml.Node{})
	case yaml.SequenceNode:
		for _, e := range v.Content {
			if e.Kind == yaml.AliasNode && e.Alias != nil {
				e = e.Alias
			}
			if e.Kind != yaml.MappingNode {
				c.problem(path, e.Line, "want a mapping to merge, got %s", kindName(e))
				c.bad[path] = true // what the merge was to supply is missing
				return false
			}
			c.mapping(e, t, path, map[string]*yaml.Node{})
		}
	default:
		c.problem(path, v.Line, "want a mapping to merge, got %s", kindName(v))
		c.bad[path] = true
		return false
	}
	return true
}

func (c *checker) unknownKey(k *yaml.Node, known []string, path string) {
	where := path + ": unknown key"
	if path == "" {
		where = "unknown top-level key"
	}
	msg := fmt.Sprintf("%s %q (line %d)", where, k.Value, k.Line)
	if s := suggest(k.Value, known); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	c.errs = append(c.errs, errors.New(msg))
}

// scalar checks a value for a string, bool, integer, float or duration field
// and leaves the node in a shape yaml.v3 decodes the same way.
func (c *checker) scalar(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.ScalarNode {
		c.reject(n, path, "want %s, got %s", describeType(t), kindName(n))
		return
	}
	raw := n.Value
	changed, ok := c.expand(n, path)
	if !ok {
		return
	}
	got := strconv.Quote(raw)
	if changed {
		got = "the value of " + got
		if t.Kind() != reflect.String {
			// The quotes were for the ${...}; let the value speak for itself.
			n.Style = 0
			n.Tag = ""
			if n.Value == "" {
				c.reject(n, path, "want %s, got an empty value from %q", describeType(t), raw)
				return
			}
		}
	}
	switch {
	case t == durationType:
		if _, err := time.ParseDuration(n.Value); err != nil {
			c.reject(n, path, "want %s, got %s", describeType(t), got)
			return
		}
		// Go through yaml.v3's string-to-Duration path, including for "0".
		n.Tag = "!!str"
	case t.Kind() == reflect.String:
		if changed {
			n.Tag = "!!str"
		}
	case t.Kind() == reflect.Bool:
		if n.ShortTag() != "!!bool" {
			c.reject(n, path, "want %s, got %s", describeType(t), got)
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		if n.ShortTag() != "!!int" || n.Decode(reflect.New(t).Interface()) != nil {
			c.reject(n, path, "want %s, got %s", describeType(t), got)
		}
	case t.Kind() == reflect.Float64:
		if tag := n.ShortTag(); tag != "!!int" && tag != "!!float" {
			c.reject(n, path, "want %s, got %s", describeType(t), got)
		}
	default:
		c.reject(n, path, "unsupported field type %s", t)
	}
}

// leaf expands the scalars of a leaf value and lets its UnmarshalYAML judge it.
func (c *checker) leaf(n *yaml.Node, t reflect.Type, path string) {
	raw := n.Value
	changed, ok := c.expandTree(n, path)
	if !ok {
		return
	}
	err := n.Decode(reflect.New(t).Interface())
	if err == nil {
		return
	}
	var ve *valueError
	switch {
	case errors.As(err, &ve) && changed && n.Kind == yaml.ScalarNode:
		c.reject(n, path, "want %s, got the value of %q", ve.want, raw)
	case errors.As(err, &ve) && changed:
		c.reject(n, path, "want %s, got a value from the environment", ve.want)
	case errors.As(err, &ve):
		c.reject(n, path, "%s", ve.Error())
	default:
		c.reject(n, path, "%s", stripValues(err.Error()))
	}
}

func (c *checker) expandTree(n *yaml.Node, path string) (changed, ok bool) {
	if !c.visit(n, path) {
		return false, false
	}
	switch n.Kind {
	case yaml.ScalarNode:
		changed, ok = c.expand(n, path)
		if changed {
			n.Style, n.Tag = 0, "!!str"
		}
		return changed, ok
	case yaml.AliasNode:
		if n.Alias == nil {
			return false, true
		}
		return c.expandTree(n.Alias, path)
	}
	ok = true
	for _, e := range n.Content {
		ch, o := c.expandTree(e, path)
		changed, ok = changed || ch, ok && o
	}
	return changed, ok
}

// expand applies ${ENV} expansion to a scalar once.
func (c *checker) expand(n *yaml.Node, path string) (changed, ok bool) {
	if ch, done := c.expanded[n]; done {
		return ch, true
	}
	out, changed, err := expandEnv(n.Value, c.lookup)
	c.expanded[n] = changed
	if err != nil {
		c.reject(n, path, "%v", err)
		return false, false
	}
	n.Value = out
	return changed, true
}

// fieldSet is the YAML view of a struct type.
type fieldSet struct {
	byName map[string]reflect.StructField
	names  []string
}

func yamlFields(t reflect.Type) fieldSet {
	fs := fieldSet{byName: map[string]reflect.StructField{}}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		fs.byName[name] = f
		fs.names = append(fs.names, name)
	}
	return fs
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	default:
		return "a scalar"
	}
}

func describeType(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration like 30s, 5m or 1h"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "an integer"
	case t.Kind() == reflect.Float64:
		return "a number"
	default:
		return t.String()
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func prefix(path string) string {
	if path == "" {
		return ""
	}
	return path + ": "
}

// stripValues removes the `value` yaml.v3 quotes in type errors, which might
// be a secret that landed in the wrong field.
func stripValues(msg string) string {
	lines := strings.Split(msg, "\n")
	for i, l := range lines {
		if a, b := strings.IndexByte(l, '`'), strings.LastIndexByte(l, '`'); a >= 0 && b > a {
			lines[i] = l[:a] + "value" + l[b+1:]
		}
	}
	return strings.Join(lines, "\n")
}

// suggest returns the known key closest to key if it is a likely typo.
func suggest(key string, known []string) string {
	best, bestDist := "", 3
	sorted := append([]string(nil), known...)
	sort.Strings(sorted)
	for _, k := range sorted {
		if d := editDistance(key, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
