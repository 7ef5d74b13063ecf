package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/config"
)

// Blackout windows are compiled with the rules: CompileChecked names one
// that cannot compile, Compile keeps it closed as Blackout.Active does, and
// BlackoutAt answers from the compiled windows.
func TestRulesCompileBlackoutWindows(t *testing.T) {
	p := config.Default().Remediation
	p.Blackout = []config.Blackout{
		{Start: "@every 1m", Duration: time.Hour},
		{Start: "0 2 * * *", Duration: time.Hour, Timezone: "UTC"},
	}
	if _, err := CompileChecked(p); err == nil || !strings.Contains(err.Error(), "remediation.blackout[0]") {
		t.Fatalf("CompileChecked = %v, want blackout[0] refused", err)
	}
	r := Compile(p)
	at := time.Date(2026, 5, 1, 2, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		at   time.Time
		want bool
	}{{at, true}, {at.Add(time.Hour), false}, {at.Add(-time.Hour), false}} {
		if got := r.BlackoutAt(tc.at); got != tc.want {
			t.Errorf("BlackoutAt(%s) = %v, want %v", tc.at, got, tc.want)
		}
	}
}
