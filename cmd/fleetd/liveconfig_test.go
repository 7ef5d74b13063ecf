package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toolkit "github.com/prometheus/exporter-toolkit/web"

	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/remediate"
	"github.com/fleetd/fleetd/internal/scrape"
	"github.com/fleetd/fleetd/internal/sim"
)

const liveConfigTmpl = `
bikeep:
  base_url: SIM
  token_url: SIM/oauth2/token
  client_id: fleetd-demo
  client_secret: fleetd-demo-secret
  locations: LOCATIONS
COPRI
schedule:
  devices: "SCHEDULE"
  rentals: "@every 1h"
remediation:
  dry_run: true
  min_fault_age: 0s
  ledger: LEDGER
`

const liveConfigCopri = `copri:
  - name: demo
    primary_url: SIM
    operator_url: SIM
    merchant_id: "12345678"
    user_id: demo@example.org
    password: demo-password
    hw_id: fleetd-test-monitor-0001`

// walkGate holds the device-list requests of the simulator while shut.
type walkGate struct {
	next    http.Handler
	mu      sync.Mutex
	shut    chan struct{} // nil: open
	arrived chan struct{} // closed by the first device-list request held
}

func (g *walkGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/device/v1/locations/") {
		g.mu.Lock()
		shut, arrived := g.shut, g.arrived
		if arrived != nil {
			close(arrived)
			g.arrived = nil
		}
		g.mu.Unlock()
		if shut != nil {
			select {
			case <-shut:
			case <-r.Context().Done():
			}
		}
	}
	g.next.ServeHTTP(w, r)
}

// close shuts the gate and returns a channel closed once a request arrives
// at it, and the function that opens it again.
func (g *walkGate) close() (arrived <-chan struct{}, open func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	shut, a := make(chan struct{}), make(chan struct{})
	g.shut, g.arrived = shut, a
	return a, func() {
		g.mu.Lock()
		g.shut, g.arrived = nil, nil
		g.mu.Unlock()
		close(shut)
	}
}

// liveBed is an in-process daemon on a simulator behind a walkGate, whose
// config file is a string the test rewrites.
type liveBed struct {
	t         *testing.T
	d         *daemon
	gate      *walkGate
	locs      []string
	faultyDev string
	ledger    string
	url       string
	yml       atomic.Pointer[string]
}

func newLiveBed(t *testing.T) *liveBed {
	t.Helper()
	opts := sim.DefaultOptions()
	opts.Locations, opts.DevicesPerLocation, opts.Latency = 3, 8, 0
	opts.FaultRate, opts.CureRate, opts.ErrorRate = 0, 0, 0
	s, err := sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	b := &liveBed{t: t, gate: &walkGate{next: s.Handler()}, ledger: filepath.Join(t.TempDir(), "ledger.db")}
	for _, l := range s.Locations() {
		b.locs = append(b.locs, l.ID)
	}
	slices.Sort(b.locs) // as snapshots list them
	for _, dev := range s.Devices(b.locs[0]) {
		if dev.CanSync() && s.SetFault(dev.ID, sim.FaultUnhealthy) == nil {
			b.faultyDev = dev.ID
			break
		}
	}
	if b.faultyDev == "" {
		t.Fatal("no syncable device")
	}
	srv := httptest.NewServer(b.gate)
	t.Cleanup(srv.Close)
	b.url = srv.URL
	b.set("auto", true, "@every 1h")
	cfg, err := b.load()
	if err != nil {
		t.Fatal(err)
	}
	listen, no, none := []string{"127.0.0.1:0"}, false, ""
	wf := &webFlags{toolkit: &toolkit.FlagConfig{WebListenAddresses: &listen, WebSystemdSocket: &no, WebConfigFile: &none}, telemetryPath: "/metrics"}
	if b.d, err = newDaemon(cfg, b.load, wf, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.d.ledger.Close() })
	return b
}

// set writes the config: locations ("auto" or a YAML list), the COPRI
// operator or none, and the device schedule.
func (b *liveBed) set(locations string, copri bool, schedule string) {
	c := ""
	if copri {
		c = liveConfigCopri
	}
	yml := strings.NewReplacer("SIM", b.url, "LOCATIONS", locations, "SCHEDULE", schedule, "LEDGER", b.ledger).Replace(strings.Replace(liveConfigTmpl, "COPRI", c, 1))
	b.yml.Store(&yml)
}

func (b *liveBed) load() (*config.Config, error) {
	return config.Parse([]byte(*b.yml.Load()), b.t.TempDir())
}

func (b *liveBed) source(name string) scrape.SourceStatus {
	st, _ := b.d.scraper.Snapshot().Source(name)
	return st
}

// decided reports whether the remediation pass of a walk decided the
// faulty device's fault with outcome (and reason, if skipped).
func (b *liveBed) decided(outcome, reason string) bool {
	return slices.ContainsFunc(b.d.engine.Status().Decisions, func(d remediate.Decision) bool {
		return d.DeviceID == b.faultyDev && d.Source == remediate.SourceWalk && d.Outcome == outcome && d.Reason == reason
	})
}

func (b *liveBed) metrics() string {
	rec := httptest.NewRecorder()
	b.d.metrics.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

var configInfoRe = regexp.MustCompile(`fleetd_config_info\{hash="([0-9a-f]{12})"\} 1`)

func (b *liveBed) configHash() string {
	m := configInfoRe.FindStringSubmatch(b.metrics())
	if m == nil {
		b.t.Fatalf("no fleetd_config_info in:\n%s", b.metrics())
	}
	return m[1]
}

func snapshotLocations(s *scrape.Snapshot) []string {
	var ids []string
	for _, l := range s.Locations {
		ids = append(ids, l.ID)
	}
	return ids
}

// Reloads while walks of a running schedule are out fetching: from
// discovery to a fixed list with the operator removed and a faster
// schedule, then back to discovery with the operator added. Each held walk
// still publishes and still gets its remediation pass, the fleet follows
// the config reloaded, and the new schedule runs.
func TestReloadDuringWalkKeepsPublishAndRemediation(t *testing.T) {
	b := newLiveBed(t)
	arrived, open := b.gate.close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.d.scraper.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	<-arrived // the first walk has discovered every location and is held
	waitUntil(t, "first rental walk", func() bool { return b.source("copri/demo").Walks == 1 })
	hash := b.configHash()

	b.set("["+b.locs[0]+", "+b.locs[1]+"]", false, "@every 1s")
	if err := b.d.reload(); err != nil {
		t.Fatal(err)
	}
	if got := snapshotLocations(b.d.scraper.Snapshot()); !slices.Equal(got, b.locs[:2]) {
		t.Errorf("locations right after the reload = %v, want %v", got, b.locs[:2])
	}
	if _, ok := b.d.scraper.Snapshot().Source("copri/demo"); ok {
		t.Error("removed operator still a source")
	}
	if b.configHash() == hash {
		t.Error("fleetd_config_info kept the hash of the old config")
	}
	open()
	waitUntil(t, "the held walk published", func() bool { return b.source("bikeep").Walks >= 1 })
	if st := b.source("bikeep"); st.Failures != 0 {
		t.Fatalf("held walk failed: %+v", st)
	}
	waitUntil(t, "its remediation pass", func() bool { return b.decided(remediate.OutcomeSkipped, remediate.ReasonTooYoung) })
	// The reloaded schedule (every second, not every hour) walks again,
	// and the second walk of the fault passes the age gate.
	waitUntil(t, "walks on the new schedule", func() bool { return b.source("bikeep").Walks >= 3 })
	waitUntil(t, "a dry-run decision", func() bool { return b.decided(remediate.OutcomeDryRun, "") })
	snap := b.d.scraper.Snapshot()
	if got := snapshotLocations(snap); !slices.Equal(got, b.locs[:2]) {
		t.Errorf("locations after the walk = %v, want %v", got, b.locs[:2])
	}

	arrived, open = b.gate.close()
	<-arrived
	b.set("auto", true, "@every 1s")
	if err := b.d.reload(); err != nil {
		t.Fatal(err)
	}
	walks := b.source("bikeep").Walks
	open()
	waitUntil(t, "the second held walk published", func() bool { return b.source("bikeep").Walks > walks })
	waitUntil(t, "every location discovered again", func() bool {
		return slices.Equal(snapshotLocations(b.d.scraper.Snapshot()), b.locs)
	})
	if _, ok := b.d.scraper.Snapshot().Source("copri/demo"); !ok {
		t.Error("added operator is not a source")
	}
}

// A reload that fails anywhere, here on the very last thing compiled (a
// blackout that cannot open), changes nothing at all: not the locations,
// the schedule, the policy or the metric options that come before it, and
// not the config in force or its hash.
func TestFailedReloadChangesNothing(t *testing.T) {
	b := newLiveBed(t)
	ctx := context.Background()
	_ = b.d.scraper.WalkRentals(ctx)
	if err := b.d.scraper.WalkDevices(ctx); err != nil {
		t.Fatal(err)
	}
	cur, snap, hash, status := b.d.cur.Load(), b.d.scraper.Snapshot(), b.configHash(), b.d.engine.Status()

	good := b.load
	b.d.load = func() (*config.Config, error) {
		b.set("["+b.locs[0]+"]", false, "@every 1s")
		cfg, err := good()
		if err != nil {
			return nil, err
		}
		cfg.Metrics.PerDevice = true
		cfg.Remediation.DryRun = false
		cfg.Remediation.Exclude.Locations = []string{b.locs[0]}
		cfg.Remediation.Blackout = []config.Blackout{{Start: "@every 1m", Duration: time.Hour}}
		return cfg, nil
	}
	err := b.d.reload()
	if err == nil || !strings.Contains(err.Error(), "blackout") {
		t.Fatalf("reload = %v, want the blackout refused", err)
	}
	if b.d.cur.Load() != cur {
		t.Error("the config in force changed")
	}
	if b.d.scraper.Snapshot() != snap {
		t.Error("the scraper was reconfigured")
	}
	if got := b.d.engine.Status(); got.DryRun != status.DryRun || got.Enabled != status.Enabled {
		t.Errorf("remediation policy changed: %+v, was %+v", got, status)
	}
	body := b.metrics()
	if strings.Contains(body, "fleet_device_info{") {
		t.Error("per-device series switched on")
	}
	assertContains(t, body, "fleetd_config_last_reload_successful 0")
	if got := b.configHash(); got != hash {
		t.Errorf("fleetd_config_info hash = %s, want %s", got, hash)
	}
	if err := b.d.scraper.WalkDevices(ctx); err != nil {
		t.Fatal(err)
	}
	if got := snapshotLocations(b.d.scraper.Snapshot()); !slices.Equal(got, b.locs) {
		t.Errorf("locations after a failed reload = %v, want %v", got, b.locs)
	}
}

// fleetd_config_info's hash is what docs/configuration.md says: the first
// 12 hex digits of the SHA-256 of check-config's output after its header
// line, so an operator can tell whether a file is the one in force.
func TestConfigHashIsCheckConfigOutput(t *testing.T) {
	path := writeConfig(t, "http://127.0.0.1:1")
	code, out, errOut := runCLI("check-config", "--config", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	_, body, _ := strings.Cut(out, "\n")
	sum := sha256.Sum256([]byte(body))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(sum[:])[:12]; cfg.Hash() != want {
		t.Fatalf("hash %s, check-config output hashes to %s", cfg.Hash(), want)
	}
}
