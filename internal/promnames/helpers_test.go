package promnames

import (
	"os"
	"os/exec"
	"testing"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// realProgram finds an installed program for a check. It skips the test when
// the program is missing, unless FLEETD_REQUIRE_REAL=1 (CI), where missing
// is a failure.
func realProgram(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	if os.Getenv("FLEETD_REQUIRE_REAL") == "1" {
		t.Fatalf("none of %q installed, and FLEETD_REQUIRE_REAL=1", names)
	}
	t.Skipf("none of %q installed (set FLEETD_REQUIRE_REAL=1 to fail instead)", names)
	return ""
}
