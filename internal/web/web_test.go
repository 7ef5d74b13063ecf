package web

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	toolkit "github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/crypto/bcrypt"
)

func flags(addr, configFile string) *toolkit.FlagConfig {
	addrs := []string{addr}
	systemd := false
	return &toolkit.FlagConfig{WebListenAddresses: &addrs, WebSystemdSocket: &systemd, WebConfigFile: &configFile}
}

func start(t *testing.T, opts Options) (base string, stop func() error) {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	base = "http://" + s.Addrs()[0].String()
	return base, func() error { cancel(); return <-done }
}

func get(t *testing.T, url string, user, pass string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func testRegistry() *prometheus.Registry {
	reg := prometheus.NewPedanticRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleet_test_gauge", Help: "A test gauge."})
	g.Set(42)
	reg.MustRegister(g)
	return reg
}

func TestEndpoints(t *testing.T) {
	var ready atomic.Bool
	reg := testRegistry()
	base, stop := start(t, Options{
		Flags: flags("127.0.0.1:0", ""), TelemetryPath: "/custom-metrics", Gatherer: reg, Registerer: reg,
		Ready: ready.Load,
	})
	defer stop()
	for _, tc := range []struct {
		path     string
		ready    bool
		wantCode int
		wantBody string
	}{
		{"/-/healthy", false, 200, "Healthy"},
		{"/-/ready", false, 503, "Not ready"},
		{"/-/ready", true, 200, "Ready"},
		{"/custom-metrics", true, 200, "fleet_test_gauge 42"},
		{"/metrics", true, 404, ""},
		{"/", true, 200, `href="/custom-metrics"`},
		{"/nope", true, 404, ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			ready.Store(tc.ready)
			code, body := get(t, base+tc.path, "", "")
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Fatalf("GET %s = %d %q, want %d containing %q", tc.path, code, body, tc.wantCode, tc.wantBody)
			}
		})
	}
	if code, body := get(t, base+"/custom-metrics", "", ""); code != 200 || !strings.Contains(body, "promhttp_metric_handler_requests_total") {
		t.Fatalf("handler metrics missing: %d", code)
	}
}

func TestHomeReplacesLanding(t *testing.T) {
	reg := testRegistry()
	base, stop := start(t, Options{
		Flags: flags("127.0.0.1:0", ""), TelemetryPath: "/metrics", Gatherer: reg, Ready: func() bool { return true },
		Home: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "status page") }),
	})
	defer stop()
	if code, body := get(t, base+"/", "", ""); code != 200 || body != "status page" {
		t.Fatalf("GET / = %d %q", code, body)
	}
	if code, _ := get(t, base+"/other", "", ""); code != 404 {
		t.Fatalf("GET /other = %d, want 404", code)
	}
}

func TestBasicAuthFromWebConfig(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret-pass"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(cfg, []byte("basic_auth_users:\n  admin: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base, stop := start(t, Options{Flags: flags("127.0.0.1:0", cfg), Gatherer: testRegistry()})
	defer stop()
	if code, _ := get(t, base+"/metrics", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("without credentials: %d, want 401", code)
	}
	if code, _ := get(t, base+"/metrics", "admin", "wrong"); code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d, want 401", code)
	}
	if code, body := get(t, base+"/metrics", "admin", "s3cret-pass"); code != 200 || !strings.Contains(body, "fleet_test_gauge") {
		t.Fatalf("with credentials: %d", code)
	}
}

func TestGracefulShutdownWaitsForRequests(t *testing.T) {
	release := make(chan struct{})
	base, stop := start(t, Options{Flags: flags("127.0.0.1:0", ""), Gatherer: testRegistry(),
		Routes: func(mux *http.ServeMux) {
			mux.HandleFunc("GET /slow", func(w http.ResponseWriter, _ *http.Request) {
				<-release
				io.WriteString(w, "done")
			})
		}})
	result := make(chan string, 1)
	go func() { _, body := get(t, base+"/slow", "", ""); result <- body }()
	time.Sleep(50 * time.Millisecond) // let the request arrive
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	select {
	case <-stopped:
		t.Fatal("shutdown did not wait for the request in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if body := <-result; body != "done" {
		t.Fatalf("in-flight request got %q", body)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 200*time.Millisecond); err == nil {
		t.Fatal("still listening after shutdown")
	}
}

func TestShutdownIsBounded(t *testing.T) {
	base, stop := start(t, Options{Flags: flags("127.0.0.1:0", ""), Gatherer: testRegistry(),
		ShutdownTimeout: 100 * time.Millisecond,
		Routes: func(mux *http.ServeMux) {
			mux.HandleFunc("GET /hang", func(w http.ResponseWriter, r *http.Request) { time.Sleep(5 * time.Second) })
		}})
	go http.Get(base + "/hang") //nolint:errcheck // the request is cut off by design
	time.Sleep(50 * time.Millisecond)
	begin := time.Now()
	if err := stop(); err == nil {
		t.Fatal("want an error when shutdown times out")
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Fatalf("shutdown took %s despite a 100ms bound", d)
	}
}

func TestListenErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, err := New(Options{Flags: flags(l.Addr().String(), ""), Gatherer: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err == nil || !strings.Contains(err.Error(), "listen on "+l.Addr().String()) {
		t.Fatalf("listen on a taken port: %v", err)
	}
	if _, err := New(Options{Flags: flags("127.0.0.1:0", ""), Gatherer: testRegistry(), TelemetryPath: "metrics"}); err == nil {
		t.Fatal("relative telemetry path accepted")
	}
}
