package config

import (
	"strings"
	"testing"
	"time"
)

// remediation.forget_after bounds how long an episode outlives its device's
// absence; zero or negative would forget episodes at once and let a glitch
// reset max_attempts, so it must be positive.
func TestRemediationForgetAfter(t *testing.T) {
	const base = "bikeep: {client_id: a, client_secret: b}\n"
	for _, tc := range []struct {
		name, yaml string
		want       time.Duration
		wantErr    string
	}{
		{name: "default", yaml: base, want: 24 * time.Hour},
		{name: "set", yaml: base + "remediation: {forget_after: 72h}\n", want: 72 * time.Hour},
		{name: "zero", yaml: base + "remediation: {forget_after: 0s}\n",
			wantErr: "remediation.forget_after: must be greater than 0, got 0s"},
		{name: "negative", yaml: base + "remediation: {forget_after: -1h}\n",
			wantErr: "remediation.forget_after: must be greater than 0, got -1h"},
		{name: "not a duration", yaml: base + "remediation: {forget_after: soon}\n",
			wantErr: "remediation.forget_after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml), t.TempDir())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Remediation.ForgetAfter != tc.want {
				t.Errorf("forget_after = %s, want %s", cfg.Remediation.ForgetAfter, tc.want)
			}
		})
	}
}
