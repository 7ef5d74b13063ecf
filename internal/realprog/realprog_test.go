package realprog

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestFindReturnsTheFirstInstalled(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	if got := Find(t, "fleetd-no-such-program", "sh"); got != sh {
		t.Fatalf("Find = %q, want %q", got, sh)
	}
}

// A missing program skips, or fails under FLEETD_REQUIRE_REAL=1. Checked in
// a child test process, since Skip and Fatal end the calling test.
func TestFindMissing(t *testing.T) {
	if os.Getenv("REALPROG_CHILD") == "1" {
		Find(t, "fleetd-no-such-program")
		t.Fatal("Find returned for a missing program")
	}
	for _, tc := range []struct {
		require string
		wantErr bool
		want    string
	}{
		{"", false, "--- SKIP"},
		{"1", true, "FLEETD_REQUIRE_REAL=1 requires it"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFindMissing$", "-test.v")
		cmd.Env = append(os.Environ(), "REALPROG_CHILD=1", EnvRequire+"="+tc.require)
		out, err := cmd.CombinedOutput()
		if (err != nil) != tc.wantErr || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s=%q: err %v, output:\n%s", EnvRequire, tc.require, err, out)
		}
	}
}
