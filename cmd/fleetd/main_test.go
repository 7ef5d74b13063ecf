package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/sim"
)

// TestMain lets the test binary act as fleetd itself when re-executed with
// FLEETD_TEST_MAIN=1, so signal handling is tested on a real process.
func TestMain(m *testing.M) {
	if os.Getenv("FLEETD_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// startSim runs a simulator for the CLI tests and returns its base URL.
func startSim(t *testing.T, mutate func(*sim.Options), setup func(*sim.Sim)) string {
	t.Helper()
	opts := sim.DefaultOptions()
	opts.Locations, opts.DevicesPerLocation, opts.Latency = 3, 8, 0
	opts.FaultRate, opts.CureRate, opts.ErrorRate = 0, 0, 0
	if mutate != nil {
		mutate(&opts)
	}
	s, err := sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	url, err := s.Start(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return url
}

func writeConfig(t *testing.T, simURL string) string {
	t.Helper()
	dir := t.TempDir()
	yml := strings.NewReplacer("SIM", simURL, "PASSWORD", "demo-password", "LEDGER", filepath.Join(dir, "ledger.db")).Replace(testConfigTmpl)
	path := filepath.Join(dir, "fleetd.yml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestOnceExitCodes(t *testing.T) {
	healthy := startSim(t, nil, nil)
	withDead := startSim(t, nil, func(s *sim.Sim) {
		for _, d := range s.Devices(s.Locations()[0].ID) {
			if s.SetFault(d.ID, sim.FaultDead) == nil {
				return
			}
		}
		t.Fatal("no device accepts dead")
	})
	withLongDead := startSim(t, nil, func(s *sim.Sim) {
		for _, d := range s.Devices(s.Locations()[0].ID) {
			if s.SetFault(d.ID, sim.FaultLongDead) == nil {
				return
			}
		}
	})
	badConfig := filepath.Join(t.TempDir(), "bad.yml")
	os.WriteFile(badConfig, []byte("bikeep:\n  nonsense: 1\n"), 0o600)

	for _, tc := range []struct {
		name     string
		config   string
		want     int
		stdout   string
		stderrRe string
	}{
		{"nothing page-worthy", writeConfig(t, healthy), 0, "PAGE-WORTHY: 0", ""},
		{"ticket-only fault", writeConfig(t, withLongDead), 0, "long_dead", ""},
		{"dead device pages", writeConfig(t, withDead), 1, "dead", ""},
		{"bad config", badConfig, 2, "", `unknown key "nonsense"`},
		{"missing config", filepath.Join(t.TempDir(), "nope.yml"), 2, "", "nope.yml"},
		{"unreachable vendor", writeConfig(t, "http://127.0.0.1:1"), 2, "", "walk failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI("once", "--config", tc.config, "--log.level", "error")
			if code != tc.want {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.want, out, errOut)
			}
			if !strings.Contains(out, tc.stdout) {
				t.Fatalf("stdout lacks %q:\n%s", tc.stdout, out)
			}
			if tc.stderrRe != "" && !regexp.MustCompile(tc.stderrRe).MatchString(errOut) {
				t.Fatalf("stderr lacks %q:\n%s", tc.stderrRe, errOut)
			}
		})
	}
}

func TestCheckConfigMasksSecrets(t *testing.T) {
	path := writeConfig(t, "http://127.0.0.1:1")
	code, out, errOut := runCLI("check-config", "--config", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, secretValue := range []string{"fleetd-demo-secret", "demo-password"} {
		if strings.Contains(out+errOut, secretValue) {
			t.Fatalf("check-config printed a secret:\n%s", out)
		}
	}
	if !strings.Contains(out, "<secret>") || !strings.Contains(out, "concurrency: 4") {
		t.Fatalf("effective config not printed:\n%s", out)
	}
}

func TestVersionAndHelp(t *testing.T) {
	if code, out, _ := runCLI("--version"); code != 0 || !strings.Contains(out+"", "fleetd") {
		t.Fatalf("--version: %d %q", code, out)
	}
	code, out, _ := runCLI("sim", "--help")
	if code != 0 || !strings.Contains(out, "fleetd-demo-secret") || !strings.Contains(out, "demo-password") {
		t.Fatalf("sim --help must show the demo credentials: %d\n%s", code, out)
	}
	if code, _, errOut := runCLI("no-such-command"); code != 2 || errOut == "" {
		t.Fatalf("unknown command: %d %q", code, errOut)
	}
}

// fleetdProcess runs this test binary as fleetd (see TestMain) with args,
// listening on a free loopback port and logging JSON; it is killed when the
// test ends. It returns once fleetd listens: its base URL, its output and
// the process.
func fleetdProcess(t *testing.T, args ...string) (string, *lockedBuffer, *exec.Cmd) {
	t.Helper()
	args = append(args, "--web.listen-address", "127.0.0.1:0", "--log.format", "json")
	out, cmd := startProcess(t, os.Args[0], []string{"FLEETD_TEST_MAIN=1"}, args...)
	return "http://" + waitFor(t, out, listeningRe, 10*time.Second), out, cmd
}

var listeningRe = regexp.MustCompile(`"addresses":\["([^"]+)"\]`)

func TestRunShutsDownOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	base, stderr, cmd := fleetdProcess(t, "run", "--config", writeConfig(t, startSim(t, nil, nil)))
	waitReady(t, base)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("fleetd exited with %v after SIGTERM\n%s", err, stderr.String())
		}
	case <-time.After(shutdownGrace + 5*time.Second):
		cmd.Process.Kill()
		t.Fatalf("fleetd did not stop after SIGTERM\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "shutting down") {
		t.Fatalf("no shutdown log:\n%s", stderr.String())
	}
}

// lockedBuffer is a bytes.Buffer safe to poll while a process writes to it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls a growing buffer for re's first submatch.
func waitFor(t *testing.T, buf *lockedBuffer, re *regexp.Regexp, limit time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(buf.String()); m != nil {
			return m[1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s not seen in:\n%s", re, buf.String())
	return ""
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never became ready", base)
}
