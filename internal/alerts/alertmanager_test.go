package alerts

import (
	"bytes"
	"context"
	"fmt"
	"github.com/fleetd/fleetd/internal/realprog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const alertmanagerBin = "/usr/bin/prometheus-alertmanager"

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

const amConfig = `
route:
  receiver: fleetd
  group_by: [alertname, device_id]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: fleetd
    webhook_configs:
      - url: WEBHOOK
        send_resolved: true
`

// TestRealAlertmanager delivers an alert through a real Alertmanager to the
// handler and checks that the Remediator receives it, then that the resolved
// notification is ignored.
func TestRealAlertmanager(t *testing.T) {
	realprog.Find(t, alertmanagerBin)
	rem := &fakeRemediator{got: make(chan Request, 4)}
	h, reg, _ := newTestHandler(t, rem)
	mux := http.NewServeMux()
	mux.Handle("/api/v1/alerts", h)
	hook := httptest.NewServer(mux)
	defer hook.Close()

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	cfg := strings.ReplaceAll(amConfig, "WEBHOOK", hook.URL+"/api/v1/alerts")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, alertmanagerBin,
		"--config.file="+cfgPath,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--cluster.listen-address=",
		"--log.level=debug",
	)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("alertmanager output:\n%s", stderr.String())
		}
	})
	base := "http://" + addr
	waitReady(t, ctx, base+"/-/ready")

	start := time.Now().UTC().Add(-time.Minute)
	alert := func(endsAt time.Time) string {
		return fmt.Sprintf(`[{"labels":{"alertname":"FleetDeviceRecoverableFaultPersisting","device_id":"dev-42","location_id":"loc-7","fault":"hardware_error","severity":"ticket"},
			"annotations":{"summary":"test"},"startsAt":%q,"endsAt":%q,"generatorURL":"http://prometheus.invalid/graph"}]`,
			start.Format(time.RFC3339), endsAt.Format(time.RFC3339))
	}
	postAlerts(t, ctx, base, alert(time.Now().Add(time.Hour)))

	select {
	case r := <-rem.got:
		if r.DeviceID != "dev-42" || r.LocationID != "loc-7" || r.Fault != "hardware_error" ||
			r.AlertName != "FleetDeviceRecoverableFaultPersisting" || r.Fingerprint == "" {
			t.Errorf("request %+v", r)
		}
	case <-ctx.Done():
		t.Fatal("the Remediator never received the alert")
	}

	// Resolve it: Alertmanager sends a resolved notification, which must not
	// reach the Remediator.
	postAlerts(t, ctx, base, alert(time.Now().Add(-time.Second)))
	for counterValue(t, reg, "fleetd_alerts_received_total", StatusResolved) < 1 {
		select {
		case <-ctx.Done():
			t.Fatal("no resolved notification arrived")
		case <-time.After(100 * time.Millisecond):
		}
	}
	if n := len(rem.requests()); n != 1 {
		t.Errorf("remediator called %d times, want 1", n)
	}
	if n := counterValue(t, reg, "fleetd_alerts_rejected_total", RejectInvalidType) +
		counterValue(t, reg, "fleetd_alerts_rejected_total", RejectInvalidJSON); n != 0 {
		t.Errorf("real Alertmanager payload rejected %v times", n)
	}
}

func waitReady(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("alertmanager not ready at %s: %v", url, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func postAlerts(t *testing.T, ctx context.Context, base, body string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v2/alerts", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/v2/alerts: %s", resp.Status)
	}
}
