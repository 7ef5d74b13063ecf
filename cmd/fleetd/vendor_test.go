package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/exporter"
	"github.com/fleetd/fleetd/internal/web/status"
)

// hostileBikeep is a Bikeep API that sends a 5 MB alias (on a dead device,
// so it is exported on a fault series too), a 5 MB location name, a device
// id with invalid UTF-8 and a 1 MB device id.
func hostileBikeep(t *testing.T) *httptest.Server {
	t.Helper()
	huge := strings.Repeat("A", 5<<20)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth2/token", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"at-1","token_type":"Bearer","expires_in":3600}`)
	})
	mux.HandleFunc("GET /location/v1/locations", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"data": []map[string]any{
			{"id": "loc-1", "type": "BIKE_DOCKS", "name": huge, "status": "LAUNCHED"},
		}})
	})
	mux.HandleFunc("GET /device/v1/locations/loc-1/devices", func(w http.ResponseWriter, _ *http.Request) {
		dead := map[string]any{"health": "DEAD", "dead_since": "2026-01-01T00:00:00Z"}
		b, _ := json.Marshal(map[string]any{"data": []map[string]any{
			{"id": "huge-alias", "alias": huge, "code": huge[:1<<20], "type": "BIKE_DOCK", "heartbeat_v2": dead,
				"location": map[string]any{"id": "loc-1"}, "commands": map[string]string{"sync-device": "x"}},
			{"id": strings.Repeat("i", 1<<20), "alias": "a 1 MB id", "type": "BIKE_DOCK", "heartbeat_v2": dead},
		}})
		b = bytes.Replace(b, []byte(`{"data":[`), []byte("{\"data\":[{\"id\":\"utf8-d1\xff\xfe\xfd\",\"type\":\"BIKE_DOCK\",\"heartbeat_v2\":{\"health\":\"DEAD\"}},"), 1)
		w.Write(b)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// lineWriter records the longest line written to it.
type lineWriter struct {
	mu      sync.Mutex
	longest int
	cur     int
	total   int
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.total += len(p)
	for _, c := range p {
		if c == '\n' {
			w.longest = max(w.longest, w.cur)
			w.cur = 0
			continue
		}
		w.cur++
	}
	w.longest = max(w.longest, w.cur)
	return len(p), nil
}

// TestHostileVendorStringsStayBounded walks a vendor that sends megabyte
// strings: /metrics stays under 1 MB, the status page under 1 MB, and no
// log line (debug level) over 16 KB.
func TestHostileVendorStringsStayBounded(t *testing.T) {
	srv := hostileBikeep(t)
	yml := strings.ReplaceAll(`
bikeep:
  base_url: SIM
  token_url: SIM/oauth2/token
  client_id: fleetd-test
  client_secret: fleetd-test-secret
  locations: auto
  max_body_bytes: 33554432
metrics:
  per_device: true
`, "SIM", srv.URL)
	cfg, err := config.Parse([]byte(yml), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logs := &lineWriter{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewPedanticRegistry()
	api, err := exporter.NewAPIMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := newScraper(cfg, log, scraperDeps{api: api})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := sc.WalkDevices(context.Background()); err != nil {
			t.Logf("walk: %.300v", err)
		}
	}
	metrics := httptest.NewRecorder()
	exporter.NewHandler(reg, sc, true, log).ServeHTTP(metrics, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := metrics.Body.String()
	if metrics.Code != 200 || len(body) >= 1<<20 {
		t.Fatalf("/metrics: HTTP %d, %d bytes", metrics.Code, len(body))
	}
	for _, want := range []string{`device_id="huge-alias"`, `fleetd_api_values_truncated_total{api="bikeep",field="alias"}`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, "utf8-d1") || strings.Contains(body, strings.Repeat("i", 200)) {
		t.Error("/metrics carries a device whose id is unusable")
	}
	page, err := status.NewHandler(status.Options{Snapshot: sc.Snapshot, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	home := httptest.NewRecorder()
	page.ServeHTTP(home, httptest.NewRequest(http.MethodGet, "/", nil))
	if home.Code != 200 || home.Body.Len() >= 1<<20 {
		t.Fatalf("status page: HTTP %d, %d bytes", home.Code, home.Body.Len())
	}
	t.Logf("/metrics %d bytes, status page %d bytes, longest log line %d bytes", len(body), home.Body.Len(), logs.longest)
	if logs.total == 0 || logs.longest > 16<<10 {
		t.Fatalf("longest log line %d bytes (of %d logged)", logs.longest, logs.total)
	}
}
