package status

import (
	"bytes"
	"context"
	"encoding/json"
	"html"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/realprog"
	"github.com/fleetd/fleetd/internal/scrape"
)

// chromiumFlags are the flags of every headless run (the screenshot script
// uses the same): no sandbox (root in CI containers), no GPU, and nothing
// that talks to the network on its own.
var chromiumFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--disable-extensions", "--enable-logging=stderr", "--v=0",
	// Let the page settle (CSP reports, failed loads) before the DOM is
	// dumped and Chromium exits, so their console lines are written.
	"--virtual-time-budget=3000",
}

// runChromium runs headless Chromium (found through PATH) with a fresh
// profile, bounded by a timeout, and returns stdout and stderr.
func runChromium(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	bin := realprog.Find(t, "chromium", "chromium-browser")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	all := append(append(append([]string{}, chromiumFlags...), "--user-data-dir="+t.TempDir()), args...)
	cmd := exec.CommandContext(ctx, bin, all...)
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

// layout is what the probe script measures in the rendered page.
type layout struct {
	// Viewport is window.innerWidth; ScrollWidth and ClientWidth are the
	// document element's: ScrollWidth > ClientWidth is a horizontal scroll.
	Viewport, ScrollWidth, ClientWidth float64
	// Remediation holds the right edge of every Remediation cell of the
	// faulty-devices table, and Cells how many there are.
	Remediation []float64
	// Broken lists ids drawn on more than one line or cut off.
	Broken []string
}

// probeNonce authorises the probe script, and only it, on the probed copy.
const probeNonce = "layoutprobe"

// probeScript measures the layout once the page is parsed and writes it into
// a data attribute of <body>, which --dump-dom then prints.
const probeScript = `<script nonce="` + probeNonce + `">
(() => {
  const d = document.documentElement;
  const out = {Viewport: innerWidth, ScrollWidth: d.scrollWidth, ClientWidth: d.clientWidth, Remediation: [], Broken: []};
  for (const td of document.querySelectorAll('#faults td.rem')) out.Remediation.push(td.getBoundingClientRect().right);
  for (const el of document.querySelectorAll('.id, .alias')) {
    if (el.textContent.length > 40) continue; // hostile-length ids may be cut, by design
    if (el.getClientRects().length !== 1 || el.scrollWidth > el.clientWidth + 1 ||
        el.getBoundingClientRect().height > 2 * parseFloat(getComputedStyle(el).lineHeight || 20)) out.Broken.push(el.textContent);
  }
  document.body.setAttribute('data-layout', JSON.stringify(out));
})();
</script>`

// probed serves the page as h renders it, with the probe script added and
// allowed by nonce; everything else — markup, inline styles — is the page's.
func probed(t *testing.T, h http.Handler, mutate func(string) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		page := rec.Body.String()
		if mutate != nil {
			page = mutate(page)
		}
		if !strings.Contains(page, "</body>") {
			t.Errorf("page without </body>")
		}
		page = strings.Replace(page, "</body>", probeScript+"</body>", 1)
		w.Header().Set("Content-Security-Policy", ContentSecurityPolicy+"; script-src 'nonce-"+probeNonce+"'")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(page))
	})
}

var layoutAttr = regexp.MustCompile(`data-layout="([^"]*)"`)

// measure loads url at the given window width and returns the probe's
// figures.
func measure(t *testing.T, url string, width int) layout {
	t.Helper()
	dom, stderr := runChromium(t, "--dump-dom", "--hide-scrollbars",
		"--window-size="+strconv.Itoa(width)+",1000", url)
	m := layoutAttr.FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("the probe wrote no layout; stderr:\n%s", stderr)
	}
	var l layout
	if err := json.Unmarshal([]byte(html.UnescapeString(m[1])), &l); err != nil {
		t.Fatalf("probe output %q: %v", m[1], err)
	}
	if int(l.Viewport) != width {
		t.Fatalf("viewport %v px, want %d: the window size did not apply", l.Viewport, width)
	}
	return l
}

func TestChromium(t *testing.T) {
	realprog.Find(t, "chromium", "chromium-browser")
	fleet := newSimFleet(t)
	h := fleet.handler(t)
	srv := httptest.NewServer(h)
	defer srv.Close()

	t.Run("failing location and faults visible, no console errors", func(t *testing.T) {
		dom, stderr := runChromium(t, "--dump-dom", srv.URL+"/")
		i, j := strings.Index(dom, `id="locations"`), strings.Index(dom, `id="sources"`)
		if i < 0 || j < i {
			t.Fatalf("no Locations with problems section before Sources")
		}
		for _, s := range []string{fleet.failing.Name, fleet.failing.ID, "HTTP 500", "INTERNAL_SERVER_ERROR", "down"} {
			if !strings.Contains(dom[i:j], s) {
				t.Errorf("Locations with problems lacks %q", s)
			}
		}
		for _, s := range []string{fleet.device.Alias, fleet.device.ID, string(fleet.fault), "Faulty devices", "1 of 4 locations failing"} {
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

	probe := httptest.NewServer(probed(t, h, nil))
	defer probe.Close()
	for _, width := range []int{1400, 800} {
		t.Run("layout at "+strconv.Itoa(width)+" px", func(t *testing.T) {
			l := measure(t, probe.URL+"/", width)
			t.Logf("document %v px in a %v px viewport; %d Remediation cells, rightmost edges %v", l.ScrollWidth, l.ClientWidth, len(l.Remediation), l.Remediation)
			if l.ScrollWidth > l.ClientWidth {
				t.Errorf("horizontal scroll: document %v px wide in a %v px viewport", l.ScrollWidth, l.ClientWidth)
			}
			if len(l.Remediation) == 0 {
				t.Fatal("no Remediation cell in the faulty-devices table")
			}
			for _, right := range l.Remediation {
				if right > l.ClientWidth {
					t.Errorf("a Remediation cell ends at %v px, off a %v px screen", right, l.ClientWidth)
				}
			}
			if len(l.Broken) > 0 {
				t.Errorf("ids or aliases wrapped or cut: %q", l.Broken)
			}
		})
	}

	for _, width := range []int{1400, 800} {
		t.Run("hostile lengths at "+strconv.Itoa(width)+" px", func(t *testing.T) { hostileLengths(t, width) })
	}

	t.Run("layout check can fail", func(t *testing.T) {
		// Without its narrow-screen rules the faulty-devices table is wider
		// than 800 px; the probe must see that.
		wide := httptest.NewServer(probed(t, h, func(page string) string {
			return strings.Replace(page, "@media (max-width:62.5rem)", "@media (max-width:1px)", 1)
		}))
		defer wide.Close()
		l := measure(t, wide.URL+"/", 800)
		if l.ScrollWidth <= l.ClientWidth {
			t.Errorf("no horizontal scroll detected without the narrow-screen rules: %+v", l)
		}
	})
}

// hostileLengths renders the longest strings the clients let through and
// requires the page to stay within the window.
func hostileLengths(t *testing.T, width int) {
	// The longest id the clients accept (128 bytes), a 256-byte alias, and
	// an error text without a space: cut or wrapped, never a scroll.
	long := func(c string, n int) string { return strings.Repeat(c, n) }
	snap := fixtureSnapshot()
	snap.Faults[0].DeviceID, snap.Faults[0].Alias = long("d", 128), long("A", 256)
	snap.Faults[0].LocationID = long("l", 128)
	snap.Locations[1].ID, snap.Locations[1].LastError = long("x", 128), long("E", 2000)
	hostile := httptest.NewServer(probed(t, newTestHandler(t, Options{
		Snapshot: func() *scrape.Snapshot { return snap }, Remediation: fixtureRemediation,
	}), nil))
	defer hostile.Close()
	l := measure(t, hostile.URL+"/", width)
	if l.ScrollWidth > l.ClientWidth {
		t.Errorf("horizontal scroll: document %v px wide in a %v px viewport", l.ScrollWidth, l.ClientWidth)
	}
	for _, right := range l.Remediation {
		if right > l.ClientWidth {
			t.Errorf("a Remediation cell ends at %v px, off a %v px screen", right, l.ClientWidth)
		}
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
