package main

import (
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/sim"
)

// A running fleetd takes a new valid config on SIGHUP and on POST /-/reload,
// rejects an invalid one (keeping the old config and metric 0), and keeps its
// fleet state either way.
func TestReloadKeepsStateAndRejectsBadConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	var deadID string
	simURL := startSim(t, nil, func(s *sim.Sim) {
		for _, d := range s.Devices(s.Locations()[0].ID) {
			if s.SetFault(d.ID, sim.FaultDead) == nil {
				deadID = d.ID
				return
			}
		}
		t.Fatal("no device accepts dead")
	})
	path := writeConfig(t, simURL)
	original, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	base, stderr, cmd := fleetdProcess(t, "run", "--config", path, "--web.enable-admin-api")
	waitReady(t, base)

	deadSince := regexp.MustCompile(`fleet_device_fault_since_timestamp_seconds\{[^}]*device_id="` + regexp.QuoteMeta(deadID) + `"[^}]*fault="dead"[^}]*\} (\S+)`)
	metrics := func() string { return fetch(t, base+"/metrics") }
	body := metrics()
	since := deadSince.FindStringSubmatch(body)
	if since == nil {
		t.Fatalf("dead device %s not exported:\n%s", deadID, body)
	}
	if strings.Contains(body, "fleet_device_info{") {
		t.Fatal("per-device series before they were configured")
	}
	configHash := func(body string) string {
		t.Helper()
		m := configInfoRe.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no fleetd_config_info in:\n%s", body)
		}
		return m[1]
	}
	firstHash := configHash(body)

	// The remediation engine's state (here: a pause, kept in the ledger)
	// must outlive every reload below.
	pause, err := http.Post(base+"/api/v1/remediation/pause", "application/json", strings.NewReader(`{"reason":"reload test"}`))
	if err != nil || pause.StatusCode != 200 {
		t.Fatalf("pause: %v %v", err, pause)
	}
	pause.Body.Close()

	// 1. A valid change by SIGHUP: per-device series appear.
	write(t, path, string(original)+"metrics:\n  per_device: true\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "per-device series after SIGHUP", func() bool { return strings.Contains(metrics(), "fleet_device_info{") })
	body = metrics()
	assertContains(t, body, "fleetd_config_last_reload_successful 1")
	if got := deadSince.FindStringSubmatch(body); got == nil || got[1] != since[1] {
		t.Fatalf("fault episode lost by reload: since %v, was %s", got, since[1])
	}
	reloadedHash := configHash(body)
	if reloadedHash == firstHash {
		t.Fatal("fleetd_config_info kept the hash of the first config")
	}

	// 2. An invalid config by POST /-/reload: rejected, old config kept.
	write(t, path, string(original)+"metrics:\n  per_device: yes-please\n")
	resp := post(t, base+"/-/reload")
	if resp.code != http.StatusInternalServerError || !strings.Contains(resp.body, "metrics.per_device") {
		t.Fatalf("invalid reload: %d %q", resp.code, resp.body)
	}
	body = metrics()
	assertContains(t, body, "fleetd_config_last_reload_successful 0")
	assertContains(t, body, "fleet_device_info{")
	if configHash(body) != reloadedHash {
		t.Fatal("a rejected reload changed fleetd_config_info")
	}
	if got := deadSince.FindStringSubmatch(body); got == nil || got[1] != since[1] {
		t.Fatalf("fault episode lost by a rejected reload: %v", got)
	}

	// 3. What only a restart can change is refused.
	write(t, path, strings.Replace(string(original), "ledger.db", "other.db", 1))
	resp = post(t, base+"/-/reload")
	if resp.code != http.StatusInternalServerError || !strings.Contains(resp.body, "remediation.ledger") {
		t.Fatalf("ledger change: %d %q", resp.code, resp.body)
	}

	// 4. The original config by POST: accepted, per-device series gone.
	write(t, path, string(original))
	if resp := post(t, base+"/-/reload"); resp.code != http.StatusOK {
		t.Fatalf("valid reload: %d %q", resp.code, resp.body)
	}
	body = metrics()
	assertContains(t, body, "fleetd_config_last_reload_successful 1")
	if strings.Contains(body, "fleet_device_info{") {
		t.Fatal("per-device series stayed after they were configured off")
	}
	if configHash(body) != firstHash {
		t.Fatal("the first config again has another hash")
	}
	if st := get(t, base+"/api/v1/remediation"); !regexp.MustCompile(`"paused":\s*true`).MatchString(st.body) || !regexp.MustCompile(`"paused_reason":\s*"reload test"`).MatchString(st.body) {
		t.Fatalf("remediation state lost across reloads: %s", st.body)
	}
	assertContains(t, body, "fleetd_remediation_paused 1")
	if resp := get(t, base+"/-/reload"); resp.code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /-/reload: %d", resp.code)
	}
	logs := stderr.String()
	assertContains(t, logs, `"msg":"config reload failed; keeping the running config"`)
	assertContains(t, logs, `"msg":"config reloaded"`)
}

// Without --web.enable-admin-api there is no /-/reload.
func TestReloadEndpointNeedsAdminAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	base, _, _ := fleetdProcess(t, "run", "--config", writeConfig(t, startSim(t, nil, nil)))
	if resp := post(t, base+"/-/reload"); resp.code != http.StatusNotFound {
		t.Fatalf("POST /-/reload without the admin API: %d", resp.code)
	}
}

type response struct {
	code int
	body string
}

func post(t *testing.T, url string) response {
	t.Helper()
	return request(t, http.MethodPost, url)
}

func get(t *testing.T, url string) response {
	t.Helper()
	return request(t, http.MethodGet, url)
}

func request(t *testing.T, method, url string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, resp.Body); err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, b.String()}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func assertContains(t *testing.T, s, want string) {
	t.Helper()
	if !strings.Contains(s, want) {
		t.Fatalf("%q missing from:\n%s", want, s)
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	var b strings.Builder
	if _, err := io.Copy(&b, resp.Body); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
