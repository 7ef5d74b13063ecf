package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/promnames"
	"github.com/fleetd/fleetd/internal/realprog"
	"github.com/fleetd/fleetd/internal/sim"
)

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// process starts a program that is killed when the test ends, pass or fail.
func process(t *testing.T, name string, env []string, args ...string) *lockedBuffer {
	t.Helper()
	out, _ := startProcess(t, name, env, args...)
	return out
}

func startProcess(t *testing.T, name string, env []string, args ...string) (*lockedBuffer, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("--- output of %s:\n%s", filepath.Base(name), tail(out.String(), 4000))
		}
	})
	return &out, cmd
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// forRe matches the `for:` durations of alerts.yml. The e2e copy shortens
// them; alerts_test.yml covers the real ones.
var forRe = regexp.MustCompile(`(?m)^(\s*)for:\s*\S+\s*$`)

// shortRules writes alerts.yml with every `for:` set to 1s.
func shortRules(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile("../../alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if !forRe.Match(b) {
		t.Fatal("alerts.yml has no for: durations to shorten")
	}
	path := filepath.Join(dir, "alerts.yml")
	if err := os.WriteFile(path, forRe.ReplaceAll(b, []byte("${1}for: 1s")), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// webhookReceiver collects the alerts Alertmanager delivers.
type webhookReceiver struct {
	mu     sync.Mutex
	alerts []map[string]string // labels of every alert received
}

func (r *webhookReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var msg struct {
		Version string `json:"version"`
		Alerts  []struct {
			Status      string            `json:"status"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"alerts"`
	}
	if err := json.NewDecoder(req.Body).Decode(&msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range msg.Alerts {
		l := map[string]string{"__status": a.Status, "__version": msg.Version}
		for k, v := range a.Labels {
			l[k] = v
		}
		for k, v := range a.Annotations {
			l["annotation_"+k] = v
		}
		r.alerts = append(r.alerts, l)
	}
}

// find returns the first alert whose labels include match.
func (r *webhookReceiver) find(match map[string]string) (map[string]string, bool) {
	return firstMatch(r.all(), match)
}

func (r *webhookReceiver) all() []map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]string(nil), r.alerts...)
}

// The real Prometheus evaluates alerts.yml over a running fleetd and the real
// Alertmanager delivers to a webhook: a dead device pages, a fault fleetd may
// not touch raises a ticket, and a recoverable fault that remediation cures
// never reaches anyone.
func TestAlertsReachAlertmanagerThroughRealPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Prometheus and Alertmanager")
	}
	// Seconds of waiting on timers and processes, little CPU: it runs
	// alongside the other long tests.
	t.Parallel()
	prom, am := realprog.Find(t, "prometheus"), realprog.Find(t, "prometheus-alertmanager")
	dir := t.TempDir()

	var deadID, ticketID, curableID string
	var simRef *sim.Sim
	simURL := startSim(t, func(o *sim.Options) {
		o.Locations, o.DevicesPerLocation, o.Seed = 3, 8, 7
		o.SyncCureProbability = 1
		o.CommandStepDelay = 200 * time.Millisecond
	}, func(s *sim.Sim) {
		simRef = s
		locs := s.Locations()
		pick := func(loc int, f sim.FaultKind, syncable bool) string {
			for _, d := range s.Devices(locs[loc].ID) {
				if syncable && !d.CanSync() || len(d.Faults) > 0 {
					continue
				}
				if s.SetFault(d.ID, f) == nil {
					return d.ID
				}
			}
			t.Fatalf("no device in %s accepts %s", locs[loc].ID, f)
			return ""
		}
		deadID = pick(0, sim.FaultDead, false)
		ticketID = pick(1, sim.FaultUnknownState, false)
		curableID = pick(2, sim.FaultUnhealthy, true)
	})

	// fleetd, as a process.
	fleetdBase, fleetdOut, _ := fleetdProcess(t, "run", "--config", remediationConfig(t, dir, simURL, "5s", ""))
	waitReadyOr(t, fleetdBase, fleetdOut)
	fleetdAddr := strings.TrimPrefix(fleetdBase, "http://")

	// The webhook receiver and Alertmanager.
	recv := &webhookReceiver{}
	hook := httptest.NewServer(recv)
	t.Cleanup(hook.Close)
	amAddr := freePort(t)
	amCfg := filepath.Join(dir, "alertmanager.yml")
	write(t, amCfg, fmt.Sprintf(`route:
  receiver: hook
  group_by: [alertname, device_id, location_id]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    # As in deploy/alertmanager.yml: severity info only feeds fleetd's
    # webhook trigger and notifies no human.
    - matchers: ['severity="info"']
      receiver: nobody
receivers:
  - name: nobody
  - name: hook
    webhook_configs:
      - url: %s/hook
        send_resolved: false
`, hook.URL))
	amOut := process(t, am, nil, "--config.file="+amCfg, "--storage.path="+filepath.Join(dir, "am"),
		"--web.listen-address="+amAddr, "--cluster.listen-address=")
	waitHTTP(t, "http://"+amAddr+"/-/ready", amOut)

	// Prometheus with the shortened rules.
	rules := shortRules(t, dir)
	promAddr := freePort(t)
	promCfg := filepath.Join(dir, "prometheus.yml")
	write(t, promCfg, fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
alerting:
  alertmanagers:
    - static_configs: [{targets: [%q]}]
scrape_configs:
  - job_name: fleetd
    static_configs: [{targets: [%q]}]
`, rules, amAddr, fleetdAddr))
	promOut := process(t, prom, nil, "--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(dir, "prom"),
		"--web.listen-address="+promAddr)
	waitHTTP(t, "http://"+promAddr+"/-/ready", promOut)

	// The page and the ticket arrive with the device's labels.
	deadline := time.Now().Add(90 * time.Second)
	want := []map[string]string{
		{"fault": "dead", "device_id": deadID, "severity": "page", "__status": "firing"},
		{"fault": "unknown_state", "device_id": ticketID, "severity": "ticket", "__status": "firing"},
	}
	for _, w := range want {
		for {
			if a, ok := recv.find(w); ok {
				for _, k := range []string{"alertname", "location_id", "alias", "annotation_summary", "annotation_description", "annotation_runbook_url"} {
					if a[k] == "" {
						t.Errorf("alert %v lacks %s", a, k)
					}
				}
				if !strings.Contains(a["annotation_runbook_url"], "docs/runbooks.md#") {
					t.Errorf("runbook_url %q does not point into docs/runbooks.md", a["annotation_runbook_url"])
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no alert matching %v reached the receiver; received: %v", w, recv.all())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// The recoverable fault was cured by sync-device and verified fixed...
	fixed := regexp.MustCompile(`fleetd_remediation_verified_total\{fault="unhealthy",result="fixed"\} ([1-9])`)
	waitUntil(t, "remediation verified the cure", func() bool { return fixed.MatchString(fetch(t, "http://"+fleetdAddr+"/metrics")) })
	if n := simRef.Stats().Commands[curableID]["sync-device"]; n != 1 {
		t.Errorf("sync-device sent %d times to the curable device, want 1", n)
	}
	if n := simRef.Stats().Commands[deadID]["sync-device"] + simRef.Stats().Commands[ticketID]["sync-device"]; n != 0 {
		t.Errorf("%d sync-device commands to devices remediation must not touch", n)
	}
	// ...and a few more evaluations later, no alert ever named it.
	time.Sleep(5 * time.Second)
	for _, a := range recv.all() {
		if a["device_id"] == curableID {
			t.Errorf("an alert about the cured device reached a human's receiver: %v", a)
		}
		if a["severity"] != "page" && a["severity"] != "ticket" {
			t.Errorf("an alert of severity %q reached a human's receiver: %v", a["severity"], a)
		}
	}
}

// waitReadyOr waits for fleetd's readiness, showing its output on failure.
func waitReadyOr(t *testing.T, base string, out *lockedBuffer) {
	t.Helper()
	waitHTTP(t, base+"/-/ready", out)
}

func waitHTTP(t *testing.T, url string, out *lockedBuffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not ready within 30s; output:\n%s", url, tail(out.String(), 4000))
}

// promScrape is a real Prometheus scraping one fleetd every second.
type promScrape struct {
	api   promnames.Prometheus
	start time.Time // when it was ready
	out   *lockedBuffer
}

// scrapeWithPrometheus starts a real Prometheus scraping the fleetd at
// base (job "fleetd", as in deploy/prometheus.yml: the fleetd dashboard
// selects up{job="fleetd"}). Without Prometheus installed it returns nil;
// a subtest records the skip, or fails under FLEETD_REQUIRE_REAL=1.
func scrapeWithPrometheus(t *testing.T, base string) *promScrape {
	t.Helper()
	var bin string
	t.Run("prometheus installed", func(t *testing.T) { bin = realprog.Find(t, "prometheus") })
	if bin == "" {
		return nil
	}
	dir := t.TempDir()
	addr := freePort(t)
	cfg := filepath.Join(dir, "prometheus.yml")
	write(t, cfg, fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: fleetd
    static_configs: [{targets: [%q]}]
`, strings.TrimPrefix(base, "http://")))
	out := process(t, bin, nil, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "prom"),
		"--web.listen-address="+addr)
	waitHTTP(t, "http://"+addr+"/-/ready", out)
	return &promScrape{api: promnames.Prometheus{BaseURL: "http://" + addr}, start: time.Now(), out: out}
}

// checkDashboardPanels requires every target of every dashboard, its
// variables resolved as Grafana resolves them with "All" selected, to
// return data from p over the time it has scraped — unless its panel is
// listed in dashboards/empty-ok.yml with the reason it may be empty. The
// same check must fail the fixture of deliberately broken queries.
func checkDashboardPanels(t *testing.T, p *promScrape) {
	t.Helper()
	ctx := context.Background()
	// The demo's story ends with the device remediation gives up on; by
	// then every fault kind has come and most have gone.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := p.api.Query(ctx, `fleetd_remediation_exhausted > 0`, time.Now())
		if err == nil && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no exhausted device in Prometheus (last error %v); Prometheus:\n%s", err, tail(p.out.String(), 2000))
		}
		time.Sleep(500 * time.Millisecond)
	}
	start, end := p.start, time.Now()

	var queries []promnames.PanelQuery
	for _, f := range repoDashboards(t) {
		qs, err := promnames.PanelQueries(f)
		if err != nil {
			t.Fatal(err)
		}
		queries = append(queries, qs...)
	}
	if len(queries) < 40 {
		t.Fatalf("only %d panel queries found in the dashboards", len(queries))
	}
	empty, err := promnames.LoadEmptyOK("../../dashboards/empty-ok.yml")
	if err != nil {
		t.Fatal(err)
	}
	if problems := promnames.CheckPanels(ctx, p.api, queries, empty, start, end, time.Second); len(problems) > 0 {
		t.Errorf("%d of %d panel queries fail on the demo:\n  %s", len(problems), len(queries), strings.Join(problems, "\n  "))
	}

	t.Run("the check fails deliberately broken queries", func(t *testing.T) {
		qs, err := promnames.PanelQueries("../../internal/promnames/testdata/broken-queries.json")
		if err != nil {
			t.Fatal(err)
		}
		problems := promnames.CheckPanels(ctx, p.api, qs, nil, start, end, time.Second)
		want := []string{
			`panel 2 "Renamed metric"/A: no data`,
			`panel 3 "Syntax error"/A: query sum by (api) (rate(fleetd_api_requests_total[1m]): HTTP 400: bad_data`,
			`panel 4 "Undefined variable"/A: variables the dashboard does not define: $site`,
			`panel 5 "Only during a storm"/A: no data`, // no excuse file given here
			`panel 7 "Impossible filter, instant"/A: no data`,
		}
		if len(problems) != len(want) {
			t.Fatalf("%d problems, want %d:\n%s", len(problems), len(want), strings.Join(problems, "\n"))
		}
		for i := range want {
			if !strings.Contains(problems[i], want[i]) {
				t.Errorf("problem %d:\n got %s\nwant it to contain %s", i, problems[i], want[i])
			}
		}
	})
}
