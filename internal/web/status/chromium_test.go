package status

import (
	"bytes"
	"context"
	"flag"
	"github.com/fleetd/fleetd/internal/realprog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var screenshot = flag.Bool("screenshot", false, "write docs/status-page.png from the Chromium test")

const chromiumBin = "/usr/bin/chromium"

// runChromium runs headless Chromium with a fresh profile, bounded by a
// timeout, and returns stdout and stderr.
func runChromium(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
		"--user-data-dir=" + t.TempDir(),
		"--no-first-run", "--disable-extensions", "--disable-background-networking",
	}
	cmd := exec.CommandContext(ctx, chromiumBin, append(base, args...)...)
	// Kill the whole process tree on timeout: Chromium forks helpers.
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\nstderr:\n%s", args, err, errb.String())
	}
	return out.String(), errb.String()
}

// consoleProblems returns the stderr lines that report a page problem. The
// page runs no script, so any console message at all — Chromium logs them
// as "INFO:CONSOLE:<line>] \"…\", source: …", CSP violations included — is
// one, as are uncaught exceptions.
func consoleProblems(stderr string) []string {
	var bad []string
	for _, line := range strings.Split(stderr, "\n") {
		if strings.Contains(line, ":CONSOLE") || strings.Contains(line, "Uncaught") ||
			strings.Contains(line, "Content Security Policy") || strings.Contains(line, "Content-Security-Policy") {
			bad = append(bad, line)
		}
	}
	return bad
}

func TestChromium(t *testing.T) {
	realprog.Find(t, chromiumBin)
	fleet := newSimFleet(t)
	srv := httptest.NewServer(fleet.handler(t))
	defer srv.Close()

	t.Run("dump-dom", func(t *testing.T) {
		dom, stderr := runChromium(t, "--dump-dom", srv.URL+"/")
		for _, s := range []string{fleet.device.Alias, fleet.device.ID, string(fleet.fault), "Faulty devices"} {
			if !strings.Contains(dom, s) {
				t.Errorf("DOM lacks %q", s)
			}
		}
		if bad := consoleProblems(stderr); len(bad) > 0 {
			t.Errorf("console problems:\n%s", strings.Join(bad, "\n"))
		}
	})

	t.Run("console check can fail", func(t *testing.T) {
		// The same detector on a page that breaks the CSP must complain;
		// otherwise the check above proves nothing.
		bad := httptest.NewServer(withBrokenCSPPage())
		defer bad.Close()
		_, stderr := runChromium(t, "--dump-dom", bad.URL+"/")
		if len(consoleProblems(stderr)) == 0 {
			t.Errorf("no console problem detected for a CSP-violating page; stderr:\n%s", stderr)
		}
	})

	if *screenshot {
		t.Run("screenshot", func(t *testing.T) {
			path, err := filepath.Abs(filepath.Join("..", "..", "..", "docs", "status-page.png"))
			if err != nil {
				t.Fatal(err)
			}
			_, stderr := runChromium(t, "--screenshot="+path, "--window-size=1280,1600", "--hide-scrollbars", srv.URL+"/")
			st, err := os.Stat(path)
			if err != nil || st.Size() == 0 {
				t.Fatalf("no screenshot at %s: %v\n%s", path, err, stderr)
			}
			t.Logf("wrote %s (%d bytes)", path, st.Size())
		})
	}
}

// withBrokenCSPPage serves, under the status page's CSP, a page whose inline
// script and remote image the policy blocks.
func withBrokenCSPPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Security-Policy", ContentSecurityPolicy)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><html><head><link rel="icon" href="data:,"></head><body><p>x</p>` +
			`<script>console.error("boom")</script><img src="http://127.0.0.1:1/x.png"></body></html>`))
	})
}
