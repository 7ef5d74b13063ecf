package main

import (
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/sim"
)

const simExample = "../../examples/sim.yml"

// examples/sim.yml must fit `fleetd sim` as it starts with no flags: its
// listen address, token endpoint and demo credentials.
func TestSimExampleMatchesTheSimulatorDefaults(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	cfg, err := config.Load(simExample)
	if err != nil {
		t.Fatal(err)
	}
	app, _ := newApp(&strings.Builder{}, &strings.Builder{})
	listen := app.GetCommand("sim").GetFlag("listen").Model().Default
	if len(listen) != 1 {
		t.Fatalf("sim --listen default = %q", listen)
	}
	base := "http://" + listen[0]
	if cfg.Bikeep.BaseURL != base || cfg.Bikeep.TokenURL != base+"/oauth2/token" {
		t.Errorf("bikeep base_url %s, token_url %s; the simulator listens at %s", cfg.Bikeep.BaseURL, cfg.Bikeep.TokenURL, base)
	}
	if cfg.Bikeep.ClientID != sim.DefaultClientID || cfg.Bikeep.ClientSecret.Reveal() != sim.DefaultClientSecret {
		t.Errorf("bikeep credentials %s/%s are not the simulator's", cfg.Bikeep.ClientID, cfg.Bikeep.ClientSecret.Reveal())
	}
	if len(cfg.Copri) != 1 {
		t.Fatalf("%d COPRI operators, want the simulator's one", len(cfg.Copri))
	}
	op := cfg.Copri[0]
	if op.PrimaryURL != base || op.OperatorURL != base || op.MerchantID != sim.DefaultCopriMerchant ||
		op.UserID != sim.DefaultCopriUser || op.Password.Reveal() != sim.DefaultCopriPassword {
		t.Errorf("COPRI operator %+v does not match the simulator at %s", op, base)
	}
	if dir := filepath.Dir(cfg.Remediation.Ledger); dir != filepath.Clean(os.Getenv("TMPDIR")) {
		t.Errorf("remediation.ledger %s is not in the temporary directory: a user without /var/lib/fleetd could not run it", cfg.Remediation.Ledger)
	}
}

// The README's three commands with examples/sim.yml work against a running
// simulator: check-config, once and run.
func TestSimExampleRunsAgainstTheSimulator(t *testing.T) {
	simURL := startSim(t, nil, nil)
	u, err := url.Parse(simURL)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(simExample)
	if err != nil {
		t.Fatal(err)
	}
	// Only where the simulator listens changes (a free port, not 8080), and
	// the ledger goes to this test's directory.
	dir := t.TempDir()
	yml := strings.ReplaceAll(string(b), "127.0.0.1:8080", u.Host)
	yml = regexp.MustCompile(`(?m)^(\s*ledger:).*$`).ReplaceAllString(yml, "${1} "+filepath.Join(dir, "ledger.db"))
	path := filepath.Join(dir, "sim.yml")
	write(t, path, yml)

	t.Run("check-config", func(t *testing.T) {
		if code, out, errOut := runCLI("check-config", "--config", path); code != 0 || !strings.Contains(out, ": valid") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("once", func(t *testing.T) {
		code, out, errOut := runCLI("once", "--config", path, "--log.level", "error")
		if code == 2 {
			t.Fatalf("once could not walk the simulator:\n%s%s", out, errOut)
		}
		for _, re := range []string{`(?m)^bikeep\s+yes`, `(?m)^copri/sim\s+yes`, `LOCATIONS: 3 walked, 0 down, 24 devices`} {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("once output lacks %s:\n%s", re, out)
			}
		}
	})
	t.Run("run", func(t *testing.T) {
		base, out, _ := fleetdProcess(t, "run", "--config", path)
		waitReadyOr(t, base, out)
		if m := fetch(t, base+"/metrics"); !strings.Contains(m, `fleetd_source_up{source="copri/sim"} 1`) {
			t.Errorf("fleetd run with the example does not reach the simulator's COPRI:\n%s", tail(m, 2000))
		}
	})
}

// A bare `fleetd` where there is no fleetd.yml explains how to start
// instead of only reporting the missing file.
func TestBareFleetdSaysHowToStart(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, args := range [][]string{nil, {"once"}, {"check-config"}} {
		t.Run(strings.Join(append([]string{"fleetd"}, args...), " "), func(t *testing.T) {
			code, _, errOut := runCLI(args...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			for _, want := range []string{"no config file fleetd.yml", "fleetd demo", "fleetd run --config examples/sim.yml", "--config fleetd.yml"} {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut)
				}
			}
		})
	}
	// A config that exists but is broken gets its own error, not the hint.
	write(t, "fleetd.yml", "bikeep: {nonsense: 1}\n")
	if code, _, errOut := runCLI("check-config"); code != 2 || strings.Contains(errOut, "fleetd demo") || !strings.Contains(errOut, `unknown key "nonsense" (line 1)`) {
		t.Errorf("broken config: exit %d\n%s", code, errOut)
	}
}

func TestBuildVersion(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "241c8a9df0102a3216b59bad00cb10792d7c277d"
	tests := []struct {
		name                 string
		stampedVer, stampRev string
		info                 *debug.BuildInfo
		wantVer, wantRev     string
	}{
		{"make stamps both", "1.4.0", "abc123", &debug.BuildInfo{Main: debug.Module{Version: "v9.9.9"}, Settings: vcs(rev, "true")}, "1.4.0", "abc123"},
		{"make stamps the version only", "1.4.0", "", &debug.BuildInfo{Settings: vcs(rev, "false")}, "1.4.0", rev},
		{"go install module@version", "", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0", "unknown"},
		{"go build in a clone", "", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201171024-241c8a9df010"}, Settings: vcs(rev, "false")},
			"v0.0.0-20261201171024-241c8a9df010", rev},
		{"revision without a module version", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "false")}, "241c8a9df010", rev},
		{"uncommitted changes", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "true")}, "241c8a9df010-dirty", rev + "-dirty"},
		{"nothing recorded", "", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel", "unknown"},
		{"no build info", "", "", nil, "devel", "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ver, r := buildVersion(tt.stampedVer, tt.stampRev, tt.info)
			if ver != tt.wantVer || r != tt.wantRev {
				t.Errorf("buildVersion = %q, %q; want %q, %q", ver, r, tt.wantVer, tt.wantRev)
			}
		})
	}
}
