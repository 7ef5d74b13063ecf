// Package realprog finds the real programs some tests drive — Prometheus,
// promtool, Alertmanager, amtool, Chromium — with one rule for all of them:
// `go test ./...` on a machine with only Go skips those tests, while the
// README's full test command (and CI) sets FLEETD_REQUIRE_REAL=1, where a
// missing program fails the test instead of silently skipping it.
package realprog

import (
	"os"
	"os/exec"
	"testing"
)

// EnvRequire is the environment variable that turns a missing program from a
// skip into a failure.
const EnvRequire = "FLEETD_REQUIRE_REAL"

// Find returns the path of the first of names that is installed (a name is
// looked up in PATH; a path is checked as it is). When none is, it skips t,
// or fails it when EnvRequire is "1".
func Find(t testing.TB, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("none of %q is installed, and %s=1 requires it", names, EnvRequire)
	}
	t.Skipf("none of %q is installed (set %s=1 to fail instead)", names, EnvRequire)
	return ""
}
