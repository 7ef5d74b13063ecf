package sim

import (
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// clientsPrefix is the import path prefix of fleetd's vendor clients.
const clientsPrefix = "github.com/fleetd/fleetd/internal/clients"

// TestImportsNoClient keeps the simulator an independent implementation of
// the vendors: no file of this package, test files included, may import a
// client package, or the simulator and the client could share a misreading
// of the reference (cross-checks against the clients live in
// internal/simcheck).
func TestImportsNoClient(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files: %v", err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if p == clientsPrefix || strings.HasPrefix(p, clientsPrefix+"/") {
				t.Errorf("%s imports %s", name, p)
			}
		}
	}
}

// TestDepsIncludeNoClient is the same through the go command, transitively:
// `go list -deps -test` over this package lists no client package.
func TestDepsIncludeNoClient(t *testing.T) {
	goTool := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(goTool); os.Getenv("GOROOT") == "" || err != nil {
		if goTool, err = exec.LookPath("go"); err != nil {
			t.Skip("the go command is not available to list dependencies")
		}
	}
	out, err := exec.Command(goTool, "list", "-deps", "-test", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %v", deps)
	}
	var self bool
	for _, d := range deps {
		if d == "github.com/fleetd/fleetd/internal/sim" {
			self = true
		}
		if d == clientsPrefix || strings.HasPrefix(d, clientsPrefix+"/") {
			t.Errorf("the simulator depends on %s", d)
		}
	}
	if !self {
		t.Errorf("go list did not list the simulator itself: %v", deps)
	}
}
