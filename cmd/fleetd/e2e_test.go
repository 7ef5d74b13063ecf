package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/exporter"
	"github.com/fleetd/fleetd/internal/scrape"
	"github.com/fleetd/fleetd/internal/sim"
)

// clock is a settable clock shared by the simulator and the scraper.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testbed is the simulator plus a scraper wired exactly as the daemon wires it.
type testbed struct {
	t   *testing.T
	sim *sim.Sim
	url string
	clk *clock
	sc  *scrape.Scraper
	reg *prometheus.Registry
}

const testConfigTmpl = `
bikeep:
  base_url: SIM
  token_url: SIM/oauth2/token
  client_id: fleetd-demo
  client_secret: fleetd-demo-secret
  concurrency: 4
  request_timeout: 5s
copri:
  - name: demo
    primary_url: SIM
    operator_url: SIM
    merchant_id: "12345678"
    user_id: demo@example.org
    password: PASSWORD
    hw_id: fleetd-test-monitor-0001
    bikes_all: true
health:
  lock_mismatch_grace: 2m
  transition_grace: 5m
  rental_max_duration: 24h
  stale_after: 5m
remediation:
  ledger: LEDGER
`

func newTestbed(t *testing.T, password string) *testbed {
	t.Helper()
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	opts := sim.DefaultOptions()
	opts.Seed, opts.Locations, opts.DevicesPerLocation = 7, 6, 10
	opts.Latency, opts.FaultRate, opts.CureRate, opts.ErrorRate = 0, 0, 0, 0
	opts.Now = clk.Now
	opts.Logger = slog.New(slog.DiscardHandler)
	s, err := sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	url, err := s.Start(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	yml := strings.NewReplacer("SIM", url, "PASSWORD", password, "LEDGER", t.TempDir()+"/ledger.db").Replace(testConfigTmpl)
	cfg, err := config.Parse([]byte(yml), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := newScraper(cfg, slog.New(slog.DiscardHandler), scraperDeps{now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(exporter.NewCollector(sc, false))
	return &testbed{t: t, sim: s, url: url, clk: clk, sc: sc, reg: reg}
}

// walk advances the clock and walks devices and rentals once.
func (b *testbed) walk(advance time.Duration) {
	b.t.Helper()
	b.clk.Add(advance)
	ctx := context.Background()
	_ = b.sc.WalkRentals(ctx)
	_ = b.sc.WalkDevices(ctx)
}

// series returns the label sets of a metric family with their values.
func (b *testbed) series(name string) []map[string]string {
	b.t.Helper()
	mfs, err := b.reg.Gather()
	if err != nil {
		b.t.Fatal(err)
	}
	var out []map[string]string
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			out = append(out, labelsOf(m))
		}
	}
	return out
}

func labelsOf(m *dto.Metric) map[string]string {
	l := map[string]string{"__value__": fmt.Sprint(m.GetGauge().GetValue() + m.GetCounter().GetValue())}
	for _, lp := range m.Label {
		l[lp.GetName()] = lp.GetValue()
	}
	return l
}

func (b *testbed) find(name string, match map[string]string) (map[string]string, bool) {
	return firstMatch(b.series(name), match)
}

// firstMatch returns the first label set that includes every pair of match.
func firstMatch(sets []map[string]string, match map[string]string) (map[string]string, bool) {
	for _, s := range sets {
		ok := true
		for k, v := range match {
			if s[k] != v {
				ok = false
				break
			}
		}
		if ok {
			return s, true
		}
	}
	return nil, false
}

// injectAnywhere sets fault f on the first device that accepts it.
func (b *testbed) injectAnywhere(f sim.FaultKind, skip map[string]bool) (deviceID, locationID string) {
	b.t.Helper()
	for _, l := range b.sim.Locations() {
		for _, d := range b.sim.Devices(l.ID) {
			if skip[d.ID] {
				continue
			}
			if err := b.sim.SetFault(d.ID, f); err == nil {
				return d.ID, l.ID
			}
		}
	}
	b.t.Fatalf("no simulated device accepts fault %s", f)
	return "", ""
}

func TestE2EEveryFaultKindAppearsAndClears(t *testing.T) {
	for _, tc := range []struct {
		inject sim.FaultKind
		fault  string // fleet_device_fault_since_timestamp_seconds{fault}
		recov  string
	}{
		{sim.FaultUnhealthy, "unhealthy", "true"},
		{sim.FaultDead, "dead", "false"},
		{sim.FaultLongDead, "long_dead", "false"},
		{sim.FaultHardwareError, "hardware_error", "true"},
		{sim.FaultNotResponding, "not_responding", "true"},
		{sim.FaultStuckTransition, "stuck_transition", "true"},
		{sim.FaultLockMismatch, "lock_mismatch", "true"},
		{sim.FaultRentalLockMismatch, "rental_lock_mismatch", "true"},
		{sim.FaultUnknownState, "unknown_state", "false"},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			b := newTestbed(t, "demo-password")
			b.walk(0)
			if got := b.series("fleet_device_fault_since_timestamp_seconds"); len(got) != 0 {
				t.Fatalf("fault series before injection: %v", got)
			}
			dev, loc := b.injectAnywhere(tc.inject, nil)
			b.walk(30 * time.Second)
			b.walk(3 * time.Minute) // past every grace: debounced faults are active now
			want := map[string]string{"device_id": dev, "location_id": loc, "fault": tc.fault, "recoverable": tc.recov}
			if _, ok := b.find("fleet_device_fault_since_timestamp_seconds", want); !ok {
				t.Fatalf("no series %v; have %v", want, b.series("fleet_device_fault_since_timestamp_seconds"))
			}
			if s, ok := b.find("fleet_device_faults", map[string]string{"location_id": loc, "fault": tc.fault}); !ok || s["__value__"] == "0" {
				t.Fatalf("fleet_device_faults{%s,%s} = %v", loc, tc.fault, s)
			}
			if err := b.sim.SetFault(dev, sim.FaultNone); err != nil {
				t.Fatal(err)
			}
			b.walk(30 * time.Second)
			if _, ok := b.find("fleet_device_fault_since_timestamp_seconds", map[string]string{"device_id": dev, "fault": tc.fault}); ok {
				t.Fatal("fault series still present after the fault cleared")
			}
			if s, _ := b.find("fleet_device_faults", map[string]string{"location_id": loc, "fault": tc.fault}); s["__value__"] != "0" {
				t.Fatalf("fleet_device_faults after clearing = %v, want 0", s)
			}
		})
	}
}

func TestE2ERentalFaultsAndDisabled(t *testing.T) {
	b := newTestbed(t, "demo-password")
	b.walk(0)
	b.injectAnywhere(sim.FaultOverdueRental, nil)
	disabled, loc := b.injectAnywhere(sim.FaultDisabled, nil)
	b.walk(30 * time.Second)
	if _, ok := b.find("copri_rental_fault_since_timestamp_seconds", map[string]string{"operator": "demo", "fault": "overdue"}); !ok {
		t.Fatalf("overdue rental missing: %v", b.series("copri_rental_fault_since_timestamp_seconds"))
	}
	if _, ok := b.find("fleet_devices", map[string]string{"location_id": loc, "hardware_state": "DISABLED"}); !ok {
		t.Fatal("DISABLED device not counted in fleet_devices")
	}
	if _, ok := b.find("fleet_device_fault_since_timestamp_seconds", map[string]string{"device_id": disabled}); ok {
		t.Fatal("DISABLED is operator intent, not a fault")
	}
	if len(b.series("copri_rentals")) == 0 || len(b.series("copri_bikes")) == 0 {
		t.Fatal("copri_rentals / copri_bikes missing")
	}
}

func TestE2EFailingLocationKeepsOthers(t *testing.T) {
	b := newTestbed(t, "demo-password")
	b.walk(0)
	locs := b.sim.Locations()
	bad := locs[0].ID
	b.sim.SetLocationError(bad, 500)
	b.walk(30 * time.Second)
	if s, ok := b.find("fleet_location_up", map[string]string{"location_id": bad}); !ok || s["__value__"] != "0" {
		t.Fatalf("fleet_location_up{%s} = %v, want 0", bad, s)
	}
	for _, l := range locs[1:] {
		if s, ok := b.find("fleet_location_up", map[string]string{"location_id": l.ID}); !ok || s["__value__"] != "1" {
			t.Fatalf("fleet_location_up{%s} = %v, want 1", l.ID, s)
		}
		if _, ok := b.find("fleet_devices", map[string]string{"location_id": l.ID}); !ok {
			t.Fatalf("healthy location %s lost its devices", l.ID)
		}
	}
	if s, _ := b.find("fleetd_source_up", map[string]string{"source": "bikeep"}); s["__value__"] != "1" {
		t.Fatalf("one failing location took the source down: %v", s)
	}
	// Last good data is kept until stale_after (5m) …
	if _, ok := b.find("fleet_devices", map[string]string{"location_id": bad}); !ok {
		t.Fatal("failing location's last good data dropped before stale_after")
	}
	b.walk(4 * time.Minute)
	if _, ok := b.find("fleet_devices", map[string]string{"location_id": bad}); !ok {
		t.Fatal("dropped before stale_after")
	}
	// … then drops out, while fleet_location_up 0 stays.
	b.walk(2 * time.Minute)
	if _, ok := b.find("fleet_devices", map[string]string{"location_id": bad}); ok {
		t.Fatal("stale location still reported after stale_after")
	}
	if _, ok := b.find("fleet_device_faults", map[string]string{"location_id": bad}); ok {
		t.Fatal("stale location still has fault counts")
	}
	if s, ok := b.find("fleet_location_up", map[string]string{"location_id": bad}); !ok || s["__value__"] != "0" {
		t.Fatalf("stale location's fleet_location_up = %v, want 0 kept", s)
	}
}

func TestE2ECopriLoginFailure(t *testing.T) {
	t.Run("wrong password", func(t *testing.T) {
		b := newTestbed(t, "not-the-password")
		b.walk(0)
		if s, ok := b.find("fleetd_source_up", map[string]string{"source": "copri/demo"}); !ok || s["__value__"] != "0" {
			t.Fatalf("fleetd_source_up{copri/demo} = %v, want 0", s)
		}
		if s, _ := b.find("fleetd_source_up", map[string]string{"source": "bikeep"}); s["__value__"] != "1" {
			t.Fatalf("bikeep source = %v, want 1", s)
		}
	})
	t.Run("login starts failing", func(t *testing.T) {
		b := newTestbed(t, "demo-password")
		b.walk(0)
		if s, _ := b.find("fleetd_source_up", map[string]string{"source": "copri/demo"}); s["__value__"] != "1" {
			t.Fatalf("copri source = %v, want 1 before the failure", s)
		}
		b.sim.SetCopriLoginFailure(true)
		b.walk(30 * time.Second)
		if s, ok := b.find("fleetd_source_up", map[string]string{"source": "copri/demo"}); !ok || s["__value__"] != "0" {
			t.Fatalf("fleetd_source_up{copri/demo} = %v, want 0", s)
		}
	})
}
