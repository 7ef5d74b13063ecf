package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fleetd/fleetd/internal/config"
)

// The tests run in deploy/; everything is addressed from the repository root.
const root = ".."

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// ---------------------------------------------------------------------------
// Dockerfile

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	cmd  string // upper-cased: FROM, RUN, ...
	args string
	line int // first line
}

// stage is a FROM and the instructions that follow it.
type stage struct {
	from   instruction
	image  string // the FROM image with build arguments substituted
	name   string // the AS name, if any
	instrs []instruction
}

// parseDockerfile splits a Dockerfile into instructions: comment lines
// (also inside continuations, as Docker does) are dropped and a trailing
// backslash joins the next line. Heredocs are not supported; the Dockerfile
// does not use them.
func parseDockerfile(data string) ([]instruction, error) {
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(data, "\n") {
		trimmed := strings.TrimSpace(line)
		// Docker skips empty lines inside continuations as well.
		if strings.HasPrefix(trimmed, "#") || trimmed == "" {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if body, ok := strings.CutSuffix(strings.TrimRight(line, " \t\r"), `\`); ok {
			cur.WriteString(body)
			continue
		}
		cur.WriteString(line)
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			continue
		}
		cmd, args, _ := strings.Cut(text, " ")
		if strings.Contains(args, "<<") && strings.ToUpper(cmd) == "RUN" {
			return nil, errors.New("heredocs are not supported by this parser")
		}
		out = append(out, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start})
	}
	if cur.Len() > 0 {
		return nil, errors.New("the last line ends in a continuation")
	}
	return out, nil
}

var argRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// substitute replaces ${NAME} and $NAME with vars[NAME] ("" when unset).
func substitute(s string, vars map[string]string) string {
	return argRef.ReplaceAllStringFunc(s, func(m string) string {
		name := strings.Trim(m, "${}")
		return vars[name]
	})
}

// stages groups the instructions by FROM, resolving the image references
// with the global ARGs (those before the first FROM) as Docker does.
func stages(t *testing.T, instrs []instruction) []stage {
	t.Helper()
	global := map[string]string{}
	var out []stage
	for _, in := range instrs {
		if in.cmd == "FROM" {
			fields := strings.Fields(in.args)
			var rest []string
			for _, f := range fields {
				if !strings.HasPrefix(f, "--") {
					rest = append(rest, f)
				}
			}
			if len(rest) != 1 && (len(rest) != 3 || !strings.EqualFold(rest[1], "AS")) {
				t.Fatalf("Dockerfile:%d: cannot read FROM %s", in.line, in.args)
			}
			s := stage{from: in, image: substitute(rest[0], global)}
			if len(rest) == 3 {
				s.name = rest[2]
			}
			out = append(out, s)
			continue
		}
		if len(out) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("Dockerfile:%d: %s before the first FROM", in.line, in.cmd)
			}
			name, def, _ := strings.Cut(in.args, "=")
			global[name] = strings.Trim(def, `"`)
			continue
		}
		out[len(out)-1].instrs = append(out[len(out)-1].instrs, in)
	}
	return out
}

// find returns the stage's instructions of kind cmd.
func (s stage) find(cmd string) []instruction {
	var out []instruction
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// args returns the names of the ARGs declared in the stage.
func (s stage) args() []string {
	var out []string
	for _, in := range s.find("ARG") {
		name, _, _ := strings.Cut(in.args, "=")
		out = append(out, name)
	}
	return out
}

// shellWords splits a command line at blanks outside quotes and removes the
// quotes; enough for the Dockerfile's build command.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	var quote rune
	inWord := false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// ldflags reads a -ldflags value: the -X settings as variable → the name of
// the build variable that feeds it, and every other flag.
func ldflags(t *testing.T, value string, varName *regexp.Regexp) (xs map[string]string, other []string) {
	t.Helper()
	xs = map[string]string{}
	fields := strings.Fields(value)
	for i := 0; i < len(fields); i++ {
		if fields[i] != "-X" {
			other = append(other, fields[i])
			continue
		}
		if i+1 == len(fields) {
			t.Fatalf("-X without a value in %q", value)
		}
		i++
		k, v, ok := strings.Cut(fields[i], "=")
		if !ok {
			t.Fatalf("-X %s: want importpath.name=value", fields[i])
		}
		m := varName.FindStringSubmatch(v)
		if m == nil {
			t.Fatalf("-X %s: the value is not a single build variable", fields[i])
		}
		xs[k] = m[1]
	}
	slices.Sort(other)
	return xs, other
}

// makeVars returns the Makefile's variable assignments, continuation lines
// joined.
func makeVars(t *testing.T) map[string]string {
	t.Helper()
	vars := map[string]string{}
	assign := regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\s*(?::=|\?=|=)\s*(.*)$`)
	var cur strings.Builder
	for line := range strings.SplitSeq(string(readFile(t, "Makefile")), "\n") {
		if body, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		if m := assign.FindStringSubmatch(cur.String()); m != nil {
			vars[m[1]] = strings.TrimSpace(m[2])
		}
		cur.Reset()
	}
	return vars
}

// makeRecipe returns the recipe of a Makefile target, continuation lines
// joined.
func makeRecipe(t *testing.T, target string) string {
	t.Helper()
	lines := strings.Split(string(readFile(t, "Makefile")), "\n")
	for i, line := range lines {
		if !strings.HasPrefix(line, target+":") {
			continue
		}
		var recipe strings.Builder
		for _, l := range lines[i+1:] {
			if !strings.HasPrefix(l, "\t") {
				break
			}
			recipe.WriteString(strings.TrimSuffix(strings.TrimSpace(l), `\`) + " ")
		}
		return recipe.String()
	}
	t.Fatalf("Makefile has no target %q", target)
	return ""
}

// defaultPort returns the port of defaultListenAddress in cmd/fleetd/flags.go.
func defaultPort(t *testing.T) string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, "cmd/fleetd/flags.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	obj := f.Scope.Lookup("defaultListenAddress")
	if obj == nil {
		t.Fatal("cmd/fleetd/flags.go: no defaultListenAddress")
	}
	spec, ok := obj.Decl.(*ast.ValueSpec)
	if !ok || len(spec.Values) != 1 {
		t.Fatal("defaultListenAddress: want a single constant")
	}
	lit, ok := spec.Values[0].(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		t.Fatal("defaultListenAddress: want a string literal")
	}
	addr, err := strconv.Unquote(lit.Value)
	if err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("defaultListenAddress %q: %v", addr, err)
	}
	return port
}

var digestRef = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// checkPinned reports why an image reference is not pinned, or "".
func checkPinned(ref string) string {
	name, digest, hasDigest := strings.Cut(ref, "@")
	if hasDigest && !digestRef.MatchString(digest) {
		return "malformed digest " + digest
	}
	tag := ""
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, tag = name[:i], name[i+1:]
	}
	switch {
	case name == "":
		return "no image name (an unset build argument?)"
	case tag == "latest":
		return "tagged latest"
	case tag == "" && !hasDigest:
		return "neither tag nor digest (means latest)"
	}
	return ""
}

func TestCheckPinned(t *testing.T) {
	tests := []struct {
		ref  string
		want string // substring of the complaint; "" for pinned
	}{
		{"golang:1.26-bookworm", ""},
		{"gcr.io/distroless/static-debian12:nonroot", ""},
		{"golang:1.26-bookworm@sha256:" + strings.Repeat("ab", 32), ""},
		{"registry:5000/team/img@sha256:" + strings.Repeat("0", 64), ""},
		{"golang", "neither tag nor digest"},
		{"registry:5000/team/img", "neither tag nor digest"},
		{"golang:latest", "latest"},
		{"golang:1.26@sha256:abc", "malformed digest"},
		{"", "no image name"},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got := checkPinned(tt.ref)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("checkPinned(%q) = %q, want %q", tt.ref, got, tt.want)
			}
		})
	}
}

func TestParseDockerfile(t *testing.T) {
	const src = "# syntax comment\nARG A=1\n\nFROM x:${A} AS b\nRUN one \\\n  # a comment inside\n  two \\\n  three\nCMD [\"x\"]\n"
	got, err := parseDockerfile(src)
	if err != nil {
		t.Fatal(err)
	}
	want := []instruction{
		{"ARG", "A=1", 2},
		{"FROM", "x:${A} AS b", 4},
		{"RUN", "one   two   three", 5},
		{"CMD", `["x"]`, 9},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if _, err := parseDockerfile("RUN a \\\n"); err == nil {
		t.Error("a dangling continuation parsed")
	}
}

func TestDockerfile(t *testing.T) {
	instrs, err := parseDockerfile(string(readFile(t, "Dockerfile")))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	st := stages(t, instrs)
	if len(st) < 2 {
		t.Fatalf("want a multi-stage build, got %d stage(s)", len(st))
	}
	names := map[string]bool{}
	for _, s := range st {
		if !names[s.image] {
			if why := checkPinned(s.image); why != "" {
				t.Errorf("Dockerfile:%d: FROM %s (%s) is not pinned: %s", s.from.line, s.from.args, s.image, why)
			}
		}
		if s.name != "" {
			names[s.name] = true
		}
	}

	// The build stage: the RUN with `go build`.
	var build *stage
	var buildRun instruction
	for i := range st[:len(st)-1] {
		for _, in := range st[i].find("RUN") {
			if strings.Contains(in.args, "go build") {
				build, buildRun = &st[i], in
			}
		}
	}
	if build == nil {
		t.Fatal("no RUN ... go build in a builder stage")
	}
	words := shellWords(buildRun.args)
	if !slices.Contains(words, "CGO_ENABLED=0") {
		t.Error("go build without CGO_ENABLED=0: the distroless static image has no libc")
	}
	if !slices.Contains(words, "-trimpath") {
		t.Error("go build without -trimpath")
	}
	if !slices.Contains(words, "./cmd/fleetd") {
		t.Error("go build does not build ./cmd/fleetd")
	}
	var ldValue, outPath string
	for i, w := range words {
		switch {
		case w == "-ldflags" && i+1 < len(words):
			ldValue = words[i+1]
		case strings.HasPrefix(w, "-ldflags="):
			ldValue = strings.TrimPrefix(w, "-ldflags=")
		case w == "-o" && i+1 < len(words):
			outPath = words[i+1]
		}
	}
	if ldValue == "" {
		t.Fatal("go build without -ldflags")
	}

	// The -X stamps must be the Makefile's, fed by the same-named variables.
	dockerX, dockerOther := ldflags(t, ldValue, regexp.MustCompile(`^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$`))
	mk := makeVars(t)
	makeX, makeOther := ldflags(t, mk["LDFLAGS"], regexp.MustCompile(`^\$\(([A-Za-z_][A-Za-z0-9_]*)\)$`))
	if len(makeX) == 0 {
		t.Fatal("the Makefile's LDFLAGS has no -X flags; the parser is out of step with the Makefile")
	}
	if !reflect.DeepEqual(dockerX, makeX) {
		t.Errorf("Dockerfile -X flags differ from the Makefile's LDFLAGS:\nDockerfile %v\nMakefile   %v", dockerX, makeX)
	}
	if !reflect.DeepEqual(dockerOther, makeOther) {
		t.Errorf("Dockerfile -ldflags %v, Makefile %v", dockerOther, makeOther)
	}
	// An undeclared ARG expands to "" and the binary would claim no version.
	recipe := makeRecipe(t, "docker")
	for _, v := range dockerX {
		if !slices.Contains(build.args(), v) {
			t.Errorf("the build stage uses ${%s} in -ldflags but declares no ARG %s", v, v)
		}
		if !strings.Contains(recipe, "--build-arg "+v+"=$("+v+")") {
			t.Errorf("make docker does not pass --build-arg %s=$(%s)", v, v)
		}
	}

	final := st[len(st)-1]
	users := final.find("USER")
	if len(users) == 0 {
		t.Fatal("the final stage has no USER: the image would run as root")
	}
	user := users[len(users)-1].args
	uid, gid, hasGID := strings.Cut(user, ":")
	ids := []string{uid}
	if hasGID {
		ids = append(ids, gid)
	}
	for _, id := range ids {
		n, err := strconv.Atoi(id)
		if err != nil {
			t.Errorf("USER %s: %q is not numeric (runAsNonRoot cannot verify a name)", user, id)
		} else if n == 0 {
			t.Errorf("USER %s: root", user)
		}
	}

	port := defaultPort(t)
	var exposed []string
	for _, in := range final.find("EXPOSE") {
		for _, p := range strings.Fields(in.args) {
			exposed = append(exposed, strings.TrimSuffix(p, "/tcp"))
		}
	}
	if !slices.Contains(exposed, port) {
		t.Errorf("EXPOSE %v, want the default listen port %s (cmd/fleetd/flags.go)", exposed, port)
	}

	ledgerDir := path.Dir(config.DefaultLedger)
	var volumes []string
	for _, in := range final.find("VOLUME") {
		if strings.HasPrefix(in.args, "[") {
			var v []string
			if err := json.Unmarshal([]byte(in.args), &v); err != nil {
				t.Fatalf("Dockerfile:%d: VOLUME: %v", in.line, err)
			}
			volumes = append(volumes, v...)
		} else {
			volumes = append(volumes, strings.Fields(in.args)...)
		}
	}
	if !slices.Contains(volumes, ledgerDir) {
		t.Errorf("VOLUME %v, want the ledger's directory %s", volumes, ledgerDir)
	}
	// The ledger directory must be writable by the image's user.
	owned := false
	for _, in := range final.find("COPY") {
		if strings.Contains(in.args, "--chown="+user) && strings.HasSuffix(in.args, " "+ledgerDir) {
			owned = true
		}
	}
	if !owned {
		t.Errorf("no COPY --chown=%s ... %s: a fresh volume would be root-owned and the ledger unwritable", user, ledgerDir)
	}

	entry := final.find("ENTRYPOINT")
	if len(entry) != 1 {
		t.Fatalf("want one ENTRYPOINT in the final stage, got %d", len(entry))
	}
	var argv []string
	if err := json.Unmarshal([]byte(entry[0].args), &argv); err != nil || len(argv) == 0 {
		t.Fatalf("ENTRYPOINT %s: want the exec (JSON) form, so signals reach fleetd", entry[0].args)
	}
	copied := false
	for _, in := range final.find("COPY") {
		f := strings.Fields(in.args)
		if strings.HasPrefix(in.args, "--from=") && len(f) >= 3 && f[len(f)-2] == outPath && f[len(f)-1] == argv[0] {
			copied = true
		}
	}
	if !copied {
		t.Errorf("ENTRYPOINT %s is not the binary built to %s", argv[0], outPath)
	}
	cmd := final.find("CMD")
	if len(cmd) != 1 {
		t.Fatalf("want one CMD in the final stage, got %d", len(cmd))
	}
	var cmdArgv []string
	if err := json.Unmarshal([]byte(cmd[0].args), &cmdArgv); err != nil || len(cmdArgv) == 0 || cmdArgv[0] != "run" {
		t.Errorf("CMD %s: want the exec form starting with run", cmd[0].args)
	}
}

func TestDockerignore(t *testing.T) {
	var patterns []string
	for line := range strings.SplitSeq(string(readFile(t, ".dockerignore")), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	if !slices.Contains(patterns, ".git") {
		t.Error(".dockerignore does not exclude .git")
	}
	// The build context must keep what `go build ./cmd/fleetd` reads.
	for _, needed := range []string{"go.mod", "go.sum", "cmd", "cmd/fleetd", "internal", "*", "**", "*.go", "**/*.go"} {
		if slices.Contains(patterns, needed) {
			t.Errorf(".dockerignore excludes %s, which the build needs", needed)
		}
	}
}

// ---------------------------------------------------------------------------
// Kubernetes

const k8sDir = "deploy/kubernetes"

// object is one decoded manifest.
type object struct {
	file string
	doc  map[string]any
}

func (o object) kind() string { s, _ := o.doc["kind"].(string); return s }
func (o object) name() string { s, _ := get(o.doc, "metadata", "name").(string); return s }

// get walks nested maps.
func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// into re-decodes a generic value into a typed one.
func into(t *testing.T, v, dst any) {
	t.Helper()
	data, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, dst); err != nil {
		t.Fatal(err)
	}
}

// decodeAll decodes every YAML document of data.
func decodeAll(data []byte) ([]map[string]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// manifests decodes every document of every YAML file in deploy/kubernetes.
func manifests(t *testing.T) []object {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, k8sDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s (%v)", k8sDir, err)
	}
	var out []object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := decodeAll(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(docs) == 0 {
			t.Errorf("%s holds no document", f)
		}
		for _, d := range docs {
			out = append(out, object{file: filepath.Base(f), doc: d})
		}
	}
	return out
}

// one returns the only object of kind.
func one(t *testing.T, objs []object, kind string) object {
	t.Helper()
	var found []object
	for _, o := range objs {
		if o.kind() == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s in %s, got %d", kind, k8sDir, len(found))
	}
	return found[0]
}

// The parts of a Deployment the tests look at.
type (
	envVar struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom struct {
			SecretKeyRef struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	}
	keyToPath struct {
		Key  string `yaml:"key"`
		Path string `yaml:"path"`
	}
	probe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port any    `yaml:"port"`
		} `yaml:"httpGet"`
	}
	container struct {
		Name  string   `yaml:"name"`
		Image string   `yaml:"image"`
		Args  []string `yaml:"args"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		Env            []envVar `yaml:"env"`
		LivenessProbe  *probe   `yaml:"livenessProbe"`
		ReadinessProbe *probe   `yaml:"readinessProbe"`
		Resources      struct {
			Requests map[string]string `yaml:"requests"`
			Limits   map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		SecurityContext struct {
			RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
			RunAsUser                *int64 `yaml:"runAsUser"`
			ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
			AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
			Capabilities             struct {
				Drop []string `yaml:"drop"`
				Add  []string `yaml:"add"`
			} `yaml:"capabilities"`
		} `yaml:"securityContext"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			ReadOnly  bool   `yaml:"readOnly"`
		} `yaml:"volumeMounts"`
	}
	volume struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
		Secret *struct {
			SecretName string      `yaml:"secretName"`
			Items      []keyToPath `yaml:"items"`
		} `yaml:"secret"`
		PersistentVolumeClaim *struct {
			ClaimName string `yaml:"claimName"`
		} `yaml:"persistentVolumeClaim"`
	}
	deployment struct {
		Spec struct {
			Replicas *int `yaml:"replicas"`
			Strategy struct {
				Type string `yaml:"type"`
			} `yaml:"strategy"`
			Selector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
			Template struct {
				Metadata struct {
					Labels map[string]string `yaml:"labels"`
				} `yaml:"metadata"`
				Spec struct {
					SecurityContext struct {
						RunAsNonRoot *bool  `yaml:"runAsNonRoot"`
						RunAsUser    *int64 `yaml:"runAsUser"`
					} `yaml:"securityContext"`
					Containers []container `yaml:"containers"`
					Volumes    []volume    `yaml:"volumes"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
)

func (c container) mount(name string) string {
	for _, m := range c.VolumeMounts {
		if m.Name == name {
			return m.MountPath
		}
	}
	return ""
}

func (c container) port(name string) int {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// quantity parses the binary-suffixed Kubernetes quantities the manifests
// use (Ki, Mi, Gi) and GOMEMLIMIT's KiB, MiB, GiB.
func quantity(t *testing.T, s string) int64 {
	t.Helper()
	for i, suffix := range []string{"Ki", "Mi", "Gi"} {
		for _, sfx := range []string{suffix + "B", suffix} {
			if n, ok := strings.CutSuffix(s, sfx); ok {
				v, err := strconv.ParseInt(n, 10, 64)
				if err != nil {
					t.Fatalf("quantity %q: %v", s, err)
				}
				return v << (10 * (i + 1))
			}
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("quantity %q: want a number with Ki/Mi/Gi", s)
	}
	return v
}

// setEnv gives every variable the container sets a placeholder value, as
// the ${VAR}s of the ConfigMap's fleetd.yml expect.
func setEnv(t *testing.T, c container) {
	t.Helper()
	for _, e := range c.Env {
		t.Setenv(e.Name, "placeholder-"+strings.ToLower(e.Name))
	}
}

var (
	envRef  = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}`)
	fileKey = regexp.MustCompile(`(?m)^\s*[a-z_]+_file:\s*(\S+)\s*$`)
)

// deploymentParts returns the parsed manifests the cross-checks need.
func deploymentParts(t *testing.T) (objs []object, dep deployment, c container, cfgYAML string) {
	t.Helper()
	objs = manifests(t)
	into(t, one(t, objs, "Deployment").doc, &dep)
	if n := len(dep.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("want one container, got %d", n)
	}
	c = dep.Spec.Template.Spec.Containers[0]
	cm := one(t, objs, "ConfigMap")
	var configFile string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			configFile = v
		}
	}
	if configFile == "" {
		t.Fatalf("container args %v: no --config=", c.Args)
	}
	cfgYAML, _ = get(cm.doc, "data", path.Base(configFile)).(string)
	if cfgYAML == "" {
		t.Fatalf("ConfigMap %s has no data key %s (the --config file)", cm.name(), path.Base(configFile))
	}
	return objs, dep, c, cfgYAML
}

func TestManifestsWellFormed(t *testing.T) {
	objs := manifests(t)
	for _, o := range objs {
		if v, _ := o.doc["apiVersion"].(string); v == "" {
			t.Errorf("%s: a document without apiVersion", o.file)
		}
		if o.kind() == "" {
			t.Errorf("%s: a document without kind", o.file)
		}
		if o.kind() != "Kustomization" && o.name() == "" {
			t.Errorf("%s: %s without metadata.name", o.file, o.kind())
		}
	}

	var kust struct {
		Resources []string `yaml:"resources"`
		Images    []struct {
			Name   string `yaml:"name"`
			NewTag string `yaml:"newTag"`
		} `yaml:"images"`
	}
	into(t, one(t, objs, "Kustomization").doc, &kust)
	var want []string
	for _, o := range objs {
		if o.file != "kustomization.yaml" && o.file != "secret.example.yaml" && !slices.Contains(want, o.file) {
			want = append(want, o.file)
		}
	}
	got := slices.Clone(kust.Resources)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("kustomization.yaml resources %v, want every manifest %v", got, want)
	}
	if slices.Contains(kust.Resources, "secret.example.yaml") {
		t.Error("kustomization.yaml applies secret.example.yaml: it would overwrite real credentials with placeholders")
	}
	for _, img := range kust.Images {
		if img.NewTag == "" || img.NewTag == "latest" {
			t.Errorf("kustomization.yaml image %s: newTag %q, want a release", img.Name, img.NewTag)
		}
	}
}

func TestDeployment(t *testing.T) {
	objs, dep, c, cfgYAML := deploymentParts(t)
	spec := dep.Spec

	if spec.Replicas == nil {
		t.Error("replicas unset (defaults to 1, but say it): want exactly 1")
	} else if *spec.Replicas != 1 {
		t.Errorf("replicas %d, want exactly 1: remediation must have a single sender", *spec.Replicas)
	}
	if spec.Strategy.Type != "Recreate" {
		t.Errorf("strategy %q, want Recreate: a rolling update runs two senders at once", spec.Strategy.Type)
	}
	for k, v := range spec.Selector.MatchLabels {
		if spec.Template.Metadata.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod template's labels", k, v)
		}
	}
	if why := checkPinned(c.Image); why != "" {
		t.Errorf("image %s: %s", c.Image, why)
	}

	port, _ := strconv.Atoi(defaultPort(t))
	for _, p := range []struct {
		name  string
		probe *probe
		path  string
	}{
		{"livenessProbe", c.LivenessProbe, "/-/healthy"},
		{"readinessProbe", c.ReadinessProbe, "/-/ready"},
	} {
		if p.probe == nil {
			t.Errorf("no %s", p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			t.Errorf("%s path %q, want %s", p.name, p.probe.HTTPGet.Path, p.path)
		}
		got := 0
		switch v := p.probe.HTTPGet.Port.(type) {
		case int:
			got = v
		case string:
			got = c.port(v)
		}
		if got != port {
			t.Errorf("%s port %v is not fleetd's port %d", p.name, p.probe.HTTPGet.Port, port)
		}
	}

	sc, podSC := c.SecurityContext, spec.Template.Spec.SecurityContext
	if !(sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) && !(podSC.RunAsNonRoot != nil && *podSC.RunAsNonRoot) {
		t.Error("runAsNonRoot is not set")
	}
	for _, uid := range []*int64{sc.RunAsUser, podSC.RunAsUser} {
		if uid != nil && *uid == 0 {
			t.Error("runAsUser 0")
		}
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		t.Errorf("capabilities drop %v add %v, want drop [ALL] and nothing added", sc.Capabilities.Drop, sc.Capabilities.Add)
	}

	limit, ok := c.Resources.Limits["memory"]
	if !ok || c.Resources.Requests["memory"] == "" || c.Resources.Requests["cpu"] == "" {
		t.Fatalf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" && quantity(t, e.Value) >= quantity(t, limit) {
			t.Errorf("GOMEMLIMIT %s is not below the memory limit %s", e.Value, limit)
		}
	}

	// Every ${VAR} in fleetd.yml is set by the container (or has a default).
	for _, m := range envRef.FindAllStringSubmatch(cfgYAML, -1) {
		if m[2] != "" {
			continue
		}
		if !slices.ContainsFunc(c.Env, func(e envVar) bool {
			return e.Name == m[1]
		}) {
			t.Errorf("fleetd.yml uses ${%s}, which the container does not set", m[1])
		}
	}

	// Volumes: config from the ConfigMap, secrets from the Secret, ledger on the PVC.
	vols := map[string]volume{}
	for _, v := range spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	mountOf := func(pred func(volume) bool) (volume, string) {
		for _, m := range c.VolumeMounts {
			if v, ok := vols[m.Name]; ok && pred(v) {
				return v, m.MountPath
			}
		}
		return volume{}, ""
	}
	cm := one(t, objs, "ConfigMap")
	if v, at := mountOf(func(v volume) bool { return v.ConfigMap != nil }); v.ConfigMap == nil || v.ConfigMap.Name != cm.name() {
		t.Errorf("the ConfigMap %s is not mounted", cm.name())
	} else if !slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--config="+at+"/") }) {
		t.Errorf("--config does not point into the ConfigMap's mount %s", at)
	}

	pvc := one(t, objs, "PersistentVolumeClaim")
	_, ledgerAt := mountOf(func(v volume) bool {
		return v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == pvc.name()
	})
	if ledgerAt == "" {
		t.Errorf("the PersistentVolumeClaim %s is not mounted", pvc.name())
	}

	secretVol, secretsAt := mountOf(func(v volume) bool { return v.Secret != nil })
	if secretVol.Secret == nil {
		t.Fatal("no Secret volume mounted")
	}
	var example struct {
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		StringData map[string]string `yaml:"stringData"`
	}
	into(t, one(t, objs, "Secret").doc, &example)
	if secretVol.Secret.SecretName != example.Metadata.Name {
		t.Errorf("the mounted Secret %s is not secret.example.yaml's %s", secretVol.Secret.SecretName, example.Metadata.Name)
	}
	for _, it := range secretVol.Secret.Items {
		if _, ok := example.StringData[it.Key]; !ok {
			t.Errorf("secret item %s is missing from secret.example.yaml", it.Key)
		}
	}
	for _, e := range c.Env {
		ref := e.ValueFrom.SecretKeyRef
		if ref.Key == "" {
			continue
		}
		if _, ok := example.StringData[ref.Key]; !ok || ref.Name != example.Metadata.Name {
			t.Errorf("env %s reads %s/%s, which secret.example.yaml lacks", e.Name, ref.Name, ref.Key)
		}
	}

	// Every *_file of fleetd.yml is a projected item of the Secret mount.
	files := fileKey.FindAllStringSubmatch(cfgYAML, -1)
	if len(files) == 0 {
		t.Error("fleetd.yml reads no secret from a file")
	}
	for _, m := range files {
		dir, base := path.Split(m[1])
		if path.Clean(dir) != secretsAt {
			t.Errorf("fleetd.yml reads %s outside the secret mount %s", m[1], secretsAt)
			continue
		}
		if !slices.ContainsFunc(secretVol.Secret.Items, func(it keyToPath) bool {
			return it.Path == base
		}) {
			t.Errorf("fleetd.yml reads %s, which the Secret volume does not project", m[1])
		}
	}

	// The config itself: it must load, and keep its ledger on the volume.
	setEnv(t, c)
	cfg := parseWithFakeSecrets(t, cfgYAML, secretsAt)
	if got := path.Dir(cfg.Remediation.Ledger); got != ledgerAt {
		t.Errorf("remediation.ledger %s is not on the ledger volume %s: a restart would forget in-flight commands", cfg.Remediation.Ledger, ledgerAt)
	}
}

// parseWithFakeSecrets parses fleetd.yml twice: as it is, where the only
// acceptable problems are the secret files this machine lacks, and with the
// secrets directory moved to a temporary one holding fake secrets, where it
// must be valid.
func parseWithFakeSecrets(t *testing.T, cfgYAML, secretsDir string) *config.Config {
	t.Helper()
	_, err := config.Parse([]byte(cfgYAML), t.TempDir())
	if err != nil {
		for line := range strings.SplitSeq(err.Error(), "\n") {
			if !strings.Contains(line, "_file: ") || !strings.Contains(line, "no such file") {
				t.Errorf("fleetd.yml: a problem other than a missing secret file: %s", line)
			}
		}
	}
	fake := t.TempDir()
	for _, m := range fileKey.FindAllStringSubmatch(cfgYAML, -1) {
		if err := os.WriteFile(filepath.Join(fake, path.Base(m[1])), []byte("fake-secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Parse([]byte(strings.ReplaceAll(cfgYAML, secretsDir+"/", fake+"/")), t.TempDir())
	if err != nil {
		t.Fatalf("fleetd.yml with fake secrets: %v", err)
	}
	return cfg
}

func TestServiceAndMonitor(t *testing.T) {
	objs, dep, c, _ := deploymentParts(t)
	var svc struct {
		Metadata struct {
			Name   string            `yaml:"name"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec struct {
			Selector map[string]string `yaml:"selector"`
			Ports    []struct {
				Name       string `yaml:"name"`
				Port       int    `yaml:"port"`
				TargetPort any    `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	into(t, one(t, objs, "Service").doc, &svc)
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("Service selector %s=%s does not select the fleetd pod", k, v)
		}
	}
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("want one Service port, got %d", len(svc.Spec.Ports))
	}
	sp := svc.Spec.Ports[0]
	if name, ok := sp.TargetPort.(string); !ok || c.port(name) == 0 {
		t.Errorf("Service targetPort %v is not a named container port", sp.TargetPort)
	}

	sm := one(t, objs, "ServiceMonitor")
	if v := sm.doc["apiVersion"]; v != "monitoring.coreos.com/v1" {
		t.Errorf("ServiceMonitor apiVersion %v", v)
	}
	var mon struct {
		Spec struct {
			JobLabel string `yaml:"jobLabel"`
			Selector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
			Endpoints []struct {
				Port string `yaml:"port"`
				Path string `yaml:"path"`
			} `yaml:"endpoints"`
		} `yaml:"spec"`
	}
	into(t, sm.doc, &mon)
	if len(mon.Spec.Selector.MatchLabels) == 0 {
		t.Error("ServiceMonitor selects every Service")
	}
	for k, v := range mon.Spec.Selector.MatchLabels {
		if svc.Metadata.Labels[k] != v {
			t.Errorf("ServiceMonitor selector %s=%s does not select the Service", k, v)
		}
	}
	if len(mon.Spec.Endpoints) != 1 || mon.Spec.Endpoints[0].Port != sp.Name || mon.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %+v, want port %s path /metrics", mon.Spec.Endpoints, sp.Name)
	}

	// The operator names the job after the Service; alerts.yml selects by job.
	job := svc.Metadata.Name
	if mon.Spec.JobLabel != "" {
		t.Skip("jobLabel set; the job name depends on the Service's labels")
	}
	alerts, err := os.ReadFile(filepath.Join(root, "alerts.yml"))
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("alerts.yml does not exist yet")
	}
	for _, m := range regexp.MustCompile(`job="([^"]*)"`).FindAllStringSubmatch(string(alerts), -1) {
		if m[1] != job {
			t.Errorf("alerts.yml selects job=%q, but the ServiceMonitor's targets get job=%q (the Service name)", m[1], job)
		}
	}
}

func TestPrometheusRuleMatchesAlerts(t *testing.T) {
	alerts, err := os.ReadFile(filepath.Join(root, "alerts.yml"))
	if err != nil {
		t.Fatalf("alerts.yml: %v; write it, then run `make prometheusrule` to generate %s/prometheusrule.yaml", err, k8sDir)
	}
	var want struct {
		Groups []any `yaml:"groups"`
	}
	if err := yaml.Unmarshal(alerts, &want); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	data := readFile(t, k8sDir+"/prometheusrule.yaml")
	if !bytes.HasPrefix(data, []byte("# Code generated by deploy/genrule")) {
		t.Errorf("prometheusrule.yaml lacks the generated-file header; run `make prometheusrule`")
	}
	docs, err := decodeAll(data)
	if err != nil || len(docs) != 1 {
		t.Fatalf("prometheusrule.yaml: want one document (%v)", err)
	}
	rule := object{file: "prometheusrule.yaml", doc: docs[0]}
	if rule.kind() != "PrometheusRule" || rule.doc["apiVersion"] != "monitoring.coreos.com/v1" {
		t.Errorf("prometheusrule.yaml is %v %s", rule.doc["apiVersion"], rule.kind())
	}
	var got struct {
		Spec struct {
			Groups []any `yaml:"groups"`
		} `yaml:"spec"`
	}
	into(t, rule.doc, &got)
	if len(want.Groups) == 0 {
		t.Fatal("alerts.yml has no groups")
	}
	if !reflect.DeepEqual(got.Spec.Groups, want.Groups) {
		t.Fatalf("%s/prometheusrule.yaml is out of date with alerts.yml: run `make prometheusrule`", k8sDir)
	}
}

// kustomize renders the kustomization in dir (relative to the repository)
// with kubectl and decodes its documents; it skips t when kubectl is not
// installed, an optional extra: the other checks need nothing but Go.
func kustomize(t *testing.T, dir string) []map[string]any {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, kubectl, "kustomize", filepath.Join(root, dir))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	docs, err := decodeAll(out)
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

// TestKustomizeBuild renders the kustomization with kubectl when it is
// installed (an optional extra: the checks above need nothing but Go).
func TestKustomizeBuild(t *testing.T) {
	docs := kustomize(t, k8sDir)
	var kinds []string
	for _, d := range docs {
		o := object{doc: d}
		kinds = append(kinds, o.kind())
		if o.kind() == "Deployment" {
			var dep deployment
			into(t, d, &dep)
			if img := dep.Spec.Template.Spec.Containers[0].Image; checkPinned(img) != "" {
				t.Errorf("rendered image %s: %s", img, checkPinned(img))
			}
		}
	}
	slices.Sort(kinds)
	want := []string{"ConfigMap", "Deployment", "PersistentVolumeClaim", "PrometheusRule", "Service", "ServiceMonitor"}
	if !slices.Equal(kinds, want) {
		t.Errorf("kustomize renders %v, want %v", kinds, want)
	}
}

// ---------------------------------------------------------------------------
// systemd

// unitFile maps section → key → values (keys may repeat).
type unitFile map[string]map[string][]string

// parseUnit reads a systemd unit: [Section] headers, Key=Value lines,
// # and ; comments, backslash continuations.
func parseUnit(data string) (unitFile, error) {
	u := unitFile{}
	section := ""
	var cur strings.Builder
	for i, line := range strings.Split(data, "\n") {
		line = strings.TrimSpace(line)
		if cur.Len() == 0 && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if body, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(strings.TrimSpace(body) + " ")
			continue
		}
		cur.WriteString(line)
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if strings.HasPrefix(text, "[") {
			if !strings.HasSuffix(text, "]") {
				return nil, errors.New("line " + strconv.Itoa(i+1) + ": bad section header")
			}
			section = text[1 : len(text)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(text, "=")
		if !ok || section == "" {
			return nil, errors.New("line " + strconv.Itoa(i+1) + ": want Key=Value inside a section")
		}
		k = strings.TrimSpace(k)
		u[section][k] = append(u[section][k], strings.TrimSpace(v))
	}
	return u, nil
}

// last returns the effective (last) value of key.
func (u unitFile) last(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func TestParseUnit(t *testing.T) {
	u, err := parseUnit("# c\n[Service]\nA=1\n; c\nA=2\nB=x \\\n  y\n[Install]\nWantedBy=m\n")
	if err != nil {
		t.Fatal(err)
	}
	want := unitFile{"Service": {"A": {"1", "2"}, "B": {"x y"}}, "Install": {"WantedBy": {"m"}}}
	if !reflect.DeepEqual(u, want) {
		t.Errorf("got %v, want %v", u, want)
	}
	if _, err := parseUnit("A=1\n"); err == nil {
		t.Error("a key outside a section parsed")
	}
}

func TestSystemdUnit(t *testing.T) {
	u, err := parseUnit(string(readFile(t, "deploy/systemd/fleetd.service")))
	if err != nil {
		t.Fatalf("fleetd.service: %v", err)
	}
	s := "Service"
	argv := strings.Fields(u.last(s, "ExecStart"))
	if len(argv) < 2 || !filepath.IsAbs(argv[0]) || argv[1] != "run" {
		t.Fatalf("ExecStart %v: want an absolute path to fleetd, then run", argv)
	}
	reload := u.last(s, "ExecReload")
	if !strings.Contains(reload, "-HUP") || !strings.Contains(reload, "$MAINPID") {
		t.Errorf("ExecReload %q: want kill -HUP $MAINPID", reload)
	}
	if u.last(s, "DynamicUser") != "yes" && u.last(s, "User") == "" {
		t.Error("neither DynamicUser=yes nor User=: the service would run as root")
	}
	if u.last(s, "User") == "root" {
		t.Error("User=root")
	}
	for key, want := range map[string]string{
		"Restart":         "on-failure",
		"NoNewPrivileges": "yes",
		"ProtectSystem":   "strict",
		"ProtectHome":     "yes",
		"PrivateTmp":      "yes",
	} {
		if got := u.last(s, key); got != want {
			t.Errorf("%s=%q, want %s", key, got, want)
		}
	}
	if v, ok := u[s]["CapabilityBoundingSet"]; !ok || v[len(v)-1] != "" {
		t.Errorf("CapabilityBoundingSet=%v, want empty (no capabilities)", v)
	}
	state := u.last(s, "StateDirectory")
	if state == "" {
		t.Fatal("no StateDirectory: under ProtectSystem=strict the ledger could not be written")
	}

	// The example fleetd.yml for this unit: it loads with the credentials
	// the unit provides, its ledger is in the StateDirectory, and --config
	// points at it in the ConfigurationDirectory.
	cfgYAML := string(readFile(t, "deploy/systemd/fleetd.yml"))
	var configFile string
	for _, a := range argv[2:] {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			configFile = v
		}
	}
	if cd := u.last(s, "ConfigurationDirectory"); configFile == "" || path.Dir(configFile) != "/etc/"+cd {
		t.Errorf("--config=%s is not in ConfigurationDirectory=%s", configFile, cd)
	}
	creds := t.TempDir()
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	var loaded []string
	for _, lc := range u[s]["LoadCredential"] {
		id, src, ok := strings.Cut(lc, ":")
		if !ok || !filepath.IsAbs(src) {
			t.Errorf("LoadCredential=%s: want id:/absolute/path", lc)
		}
		loaded = append(loaded, id)
		if err := os.WriteFile(filepath.Join(creds, id), []byte("fake\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range fileKey.FindAllStringSubmatch(cfgYAML, -1) {
		if id, ok := strings.CutPrefix(m[1], "${CREDENTIALS_DIRECTORY}/"); !ok || !slices.Contains(loaded, id) {
			t.Errorf("fleetd.yml reads %s, which is not a LoadCredential= of the unit", m[1])
		}
	}
	for _, m := range envRef.FindAllStringSubmatch(cfgYAML, -1) {
		if m[1] != "CREDENTIALS_DIRECTORY" {
			t.Setenv(m[1], "placeholder")
		}
	}
	cfg, err := config.Parse([]byte(cfgYAML), t.TempDir())
	if err != nil {
		t.Fatalf("deploy/systemd/fleetd.yml: %v", err)
	}
	if got, want := path.Dir(cfg.Remediation.Ledger), "/var/lib/"+state; got != want {
		t.Errorf("remediation.ledger %s is not in StateDirectory %s", cfg.Remediation.Ledger, want)
	}
}

// TestSystemdAnalyze runs systemd-analyze verify (and the offline security
// score) on the unit when systemd-analyze is installed; an optional extra.
func TestSystemdAnalyze(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	data := string(readFile(t, "deploy/systemd/fleetd.service"))
	u, err := parseUnit(data)
	if err != nil {
		t.Fatal(err)
	}
	// verify insists that ExecStart is executable: stand in the test binary.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := strings.Fields(u.last("Service", "ExecStart"))[0]
	unit := filepath.Join(t.TempDir(), "fleetd.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(data, bin, self)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, sa, "verify", unit).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("fleetd.service")) {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	out, err = exec.CommandContext(ctx, sa, "security", "--offline=true", unit).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for fleetd\.service: ([0-9.]+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Logf("systemd-analyze security --offline unavailable (%v); exposure not checked", err)
		return
	}
	// 0 is fully locked down, 10 unprotected; the unit scores about 1.2.
	if score, _ := strconv.ParseFloat(string(m[1]), 64); score > 2.5 {
		t.Errorf("systemd-analyze security: exposure %s, want ≤ 2.5 (hardening lost?)\n%s", m[1], out)
	}
}
