package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/fleetd/fleetd/internal/sim"
)

// The admin API and the Alertmanager webhook on a running fleetd behind
// --web.config.file basic auth: pause stops what the webhook asks for, resume
// lets it through the same gates, and with trigger alertmanager fleetd's own
// walks send nothing.
func TestAdminAPIAndWebhookBehindAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	var s *sim.Sim
	var dev, alias, loc string
	simURL := startSim(t, func(o *sim.Options) {
		o.Locations, o.DevicesPerLocation, o.Seed = 4, 10, 7
		o.SyncCureProbability = 1
		o.CommandStepDelay = 100 * time.Millisecond
	}, func(sm *sim.Sim) {
		s = sm
		for _, d := range sm.Devices(sm.Locations()[1].ID) {
			if d.CanSync() && sm.SetFault(d.ID, sim.FaultUnhealthy) == nil {
				dev, alias, loc = d.ID, d.Alias, d.LocationID
				return
			}
		}
		t.Fatal("no syncable device")
	})
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret-pass"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webCfg := filepath.Join(dir, "web.yml")
	write(t, webCfg, fmt.Sprintf("basic_auth_users:\n  oncall: %s\n", hash))
	cfg := remediationConfig(t, dir, simURL, "10m", "  trigger: alertmanager\n")
	base, out, _ := fleetdProcess(t, "run", "--config", cfg, "--web.config.file", webCfg, "--web.enable-admin-api")
	call := func(method, path, body string, auth bool) response {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if auth {
			req.SetBasicAuth("oncall", "s3cret-pass")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = fmt.Fprint(&b, readAll(t, resp))
		return response{resp.StatusCode, b.String()}
	}
	waitUntil(t, "fleetd ready", func() bool {
		req, _ := http.NewRequest("GET", base+"/-/ready", nil)
		req.SetBasicAuth("oncall", "s3cret-pass")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	for _, path := range []string{"/api/v1/remediation", "/api/v1/alerts", "/", "/-/reload"} {
		if r := call("GET", path, "", false); r.code != http.StatusUnauthorized {
			t.Errorf("GET %s without credentials: %d", path, r.code)
		}
	}
	// What a hostile page can make a logged-in browser send is refused.
	form, err := http.NewRequest("POST", base+"/api/v1/remediation/pause", strings.NewReader("reason=pwned"))
	if err != nil {
		t.Fatal(err)
	}
	form.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	form.SetBasicAuth("oncall", "s3cret-pass")
	crossSite := form.Clone(form.Context())
	crossSite.Header.Set("Content-Type", "application/json")
	crossSite.Header.Set("Sec-Fetch-Site", "cross-site")
	crossSite.Header.Set("Origin", "https://evil.example")
	crossSite.Body = io.NopCloser(strings.NewReader(`{"reason":"pwned"}`))
	crossSite.ContentLength = int64(len(`{"reason":"pwned"}`))
	for _, tc := range []struct {
		req  *http.Request
		want int
	}{{form, http.StatusUnsupportedMediaType}, {crossSite, http.StatusForbidden}} {
		resp, err := http.DefaultClient.Do(tc.req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("pause by %s with Sec-Fetch-Site %q: %d, want %d", tc.req.Header.Get("Content-Type"), tc.req.Header.Get("Sec-Fetch-Site"), resp.StatusCode, tc.want)
		}
	}
	if r := call("POST", "/api/v1/remediation/pause", `{}`, true); r.code != http.StatusBadRequest {
		t.Errorf("pause without a reason: %d %s", r.code, r.body)
	}
	if r := call("POST", "/api/v1/remediation/pause", `{"reason":"street works"}`, true); r.code != 200 {
		t.Fatalf("pause: %d %s", r.code, r.body)
	}
	var st struct {
		Paused       bool   `json:"paused"`
		PausedReason string `json:"paused_reason"`
		Trigger      string `json:"trigger"`
	}
	if err := json.Unmarshal([]byte(call("GET", "/api/v1/remediation", "", true).body), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Paused || st.PausedReason != "street works" || st.Trigger != "alertmanager" {
		t.Fatalf("status after pause = %+v", st)
	}

	alert := fmt.Sprintf(`{"version":"4","groupKey":"{}:{}","status":"firing","receiver":"fleetd","groupLabels":{},
"commonLabels":{},"commonAnnotations":{},"externalURL":"http://am","alerts":[{"status":"firing",
"labels":{"alertname":"FleetDeviceFaultRemediable","device_id":%q,"location_id":%q,"fault":"unhealthy"},
"annotations":{},"startsAt":"2026-11-21T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"abc"}]}`, dev, loc)
	if r := call("POST", "/api/v1/alerts", alert, true); r.code != 200 || !strings.Contains(r.body, `"reason":"paused"`) {
		t.Fatalf("webhook while paused: %d %s", r.code, r.body)
	}
	if n := s.Stats().CommandsTotal; n != 0 {
		t.Fatalf("%d commands sent while paused", n)
	}
	if r := call("POST", "/api/v1/alerts", `{"version":"3","alerts":[]}`, true); r.code != http.StatusBadRequest {
		t.Errorf("webhook version 3: %d %s", r.code, r.body)
	}
	if r := call("POST", "/api/v1/remediation/resume", `{"reason":"works done"}`, true); r.code != 200 {
		t.Fatalf("resume: %d %s", r.code, r.body)
	}
	// Until the fault has been seen on two walks and for min_fault_age, the
	// webhook's request meets the too_young gate; then it is sent.
	waitUntil(t, "the webhook's request is sent", func() bool {
		r := call("POST", "/api/v1/alerts", alert, true)
		if r.code != 200 || !strings.Contains(r.body, `"outcome":"sent"`) && !strings.Contains(r.body, `"reason":"too_young"`) {
			t.Fatalf("webhook after resume: %d %s", r.code, r.body)
		}
		return strings.Contains(r.body, `"outcome":"sent"`)
	})
	waitUntil(t, "the command reaches the device", func() bool { return s.Stats().Commands[dev]["sync-device"] == 1 })
	// A second alert for the same fault meets the in-flight or cooldown gate.
	if r := call("POST", "/api/v1/alerts", alert, true); !strings.Contains(r.body, `"outcome":"skipped"`) {
		t.Errorf("repeated alert: %s", r.body)
	}
	time.Sleep(3 * time.Second) // three walks: with trigger alertmanager they send nothing
	if n := s.Stats().CommandsTotal; n != 1 {
		t.Errorf("%d commands in all, want the one the webhook asked for", n)
	}
	if page := call("GET", "/", "", true); page.code != 200 || !strings.Contains(page.body, alias) {
		t.Errorf("status page: %d, alias %s missing", page.code, alias)
	}
	if strings.Contains(out.String(), "s3cret-pass") {
		t.Error("the basic auth password reached the log")
	}
}

// Without --web.enable-admin-api the remediation API does not exist.
func TestRemediationAPINeedsAdminFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	cfg := remediationConfig(t, t.TempDir(), startSim(t, nil, nil), "1m", "")
	base, out, _ := fleetdProcess(t, "run", "--config", cfg)
	waitReadyOr(t, base, out)
	for _, c := range []struct{ method, path string }{{"GET", "/api/v1/remediation"}, {"POST", "/api/v1/remediation/pause"}} {
		if r := request(t, c.method, base+c.path); r.code != http.StatusNotFound {
			t.Errorf("%s %s without the admin API: %d", c.method, c.path, r.code)
		}
	}
}
