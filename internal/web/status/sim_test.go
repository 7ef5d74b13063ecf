package status

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/clients/copri"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/scrape"
	"github.com/fleetd/fleetd/internal/secret"
	"github.com/fleetd/fleetd/internal/sim"
)

// Credentials of the simulated backends: distinctive, so that the tests can
// prove they never reach the page.
const (
	simClientID      = "status-test-client"
	simClientSecret  = "client-secret-7f3a9c1e5b"
	simCopriPassword = "copri-password-2d8e4f6a0c"
)

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

// simFleet is a simulator-backed snapshot with one injected fault and one
// location that answers 500 on every walk, as in the demo.
type simFleet struct {
	snap    *scrape.Snapshot
	now     time.Time
	device  sim.DeviceInfo
	fault   health.FaultKind
	failing sim.LocationInfo
}

// newSimFleet starts the simulator, walks it with the real clients and the
// scrape package, injects a hardware_error into a known device and walks
// until the fault is active.
func newSimFleet(t *testing.T) simFleet {
	t.Helper()
	clk := &clock{t: time.Date(2025, 5, 12, 8, 0, 0, 0, time.UTC)}
	opts := sim.DefaultOptions()
	opts.Seed, opts.Locations, opts.DevicesPerLocation = 11, 4, 8
	opts.Latency, opts.FaultRate, opts.CureRate, opts.ErrorRate = 0, 0, 0, 0
	opts.ClientID, opts.ClientSecret = simClientID, simClientSecret
	opts.CopriPassword = simCopriPassword
	opts.Now = clk.Now
	opts.Logger = slog.New(slog.DiscardHandler)
	s, err := sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); <-s.Done() })
	url, err := s.Start(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bk, err := bikeep.NewClient(url,
		bikeep.WithClientCredentials(url+"/oauth2/token", simClientID, secret.String(simClientSecret)),
		bikeep.WithRetry(2, time.Millisecond, 10*time.Millisecond),
	)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := copri.NewClient(url, url, copri.Credentials{
		MerchantID: opts.CopriMerchant, UserID: opts.CopriUser,
		Password: secret.String(simCopriPassword), HWID: "status-page-test-0001",
	})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := scrape.New(scrape.Options{
		Devices:     bk,
		Concurrency: 2,
		Operators: []scrape.Operator{{
			Name: "demo", API: cp, BikesAll: true, Match: health.Match{Field: health.MatchAlias},
		}},
		Health:     health.Params{LockMismatchGrace: 2 * time.Minute, TransitionGrace: 5 * time.Minute, RentalMaxDuration: 24 * time.Hour},
		StaleAfter: 5 * time.Minute,
		Now:        clk.Now,
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	walk := func(advance time.Duration) {
		clk.Add(advance)
		if err := sc.WalkRentals(ctx); err != nil {
			t.Fatalf("rental walk: %v", err)
		}
		if err := sc.WalkDevices(ctx); err != nil {
			t.Fatalf("device walk: %v", err)
		}
	}
	locs := s.Locations()
	failing := locs[len(locs)-1]
	s.SetLocationError(failing.ID, http.StatusInternalServerError)
	walk(0)

	// The first device of the second location that takes the fault.
	var target sim.DeviceInfo
	for _, d := range s.Devices(s.Locations()[1].ID) {
		if err := s.SetFault(d.ID, sim.FaultHardwareError); err == nil {
			target = d
			break
		}
	}
	if target.ID == "" {
		t.Fatal("no simulated device takes hardware_error")
	}
	// A few other faults, so the page (and its screenshot) shows a mix.
	for _, k := range []sim.FaultKind{sim.FaultDead, sim.FaultLockMismatch, sim.FaultUnknownState, sim.FaultOverdueRental} {
		for _, l := range s.Locations() {
			if l.ID == target.LocationID || l.ID == failing.ID {
				continue
			}
			done := false
			for _, d := range s.Devices(l.ID) {
				if len(d.Faults) == 0 && s.SetFault(d.ID, k) == nil {
					done = true
					break
				}
			}
			if done {
				break
			}
		}
	}
	walk(30 * time.Second)
	walk(3 * time.Minute)

	snap := sc.Snapshot()
	found := false
	for _, f := range snap.Faults {
		if f.DeviceID == target.ID && f.Kind == health.HardwareError {
			found = true
		}
	}
	if !found {
		t.Fatalf("injected fault on %s not in the snapshot: %+v", target.ID, snap.Faults)
	}
	return simFleet{snap: snap, now: clk.Now(), device: target, fault: health.HardwareError, failing: failing}
}

func (f simFleet) handler(t testing.TB) http.Handler {
	return newTestHandler(t, Options{
		Snapshot: func() *scrape.Snapshot { return f.snap },
		Remediation: func() *Remediation {
			return &Remediation{
				Enabled: true, Trigger: "internal", InFlight: 1,
				Decisions: []Decision{{
					Time: f.now.Add(-20 * time.Second), DeviceID: f.device.ID, Alias: f.device.Alias, LocationID: f.device.LocationID,
					Fault: string(f.fault), Source: "walk", Outcome: "sent", Attempt: 1, CommandID: "cmd-000001",
				}},
				DeviceState: map[string]string{f.device.ID: "in flight (attempt 1)"},
			}
		},
		Version: "test",
		Now:     func() time.Time { return f.now },
	})
}

func TestSimulatorSnapshot(t *testing.T) {
	fleet := newSimFleet(t)
	rec := get(fleet.handler(t), http.MethodGet, "/")
	if rec.Code != http.StatusOK {
		t.Fatalf("code %d", rec.Code)
	}
	page := rec.Body.String()
	faults := page[strings.Index(page, `id="faults"`):strings.Index(page, `id="rentals"`)]
	for _, s := range []string{
		`<td data-label="Alias"><span class="alias" title="` + fleet.device.Alias + `">` + fleet.device.Alias + "</span></td>", fleet.device.ID, fleet.device.LocationID,
		"<code>hardware_error</code>", "in flight (attempt 1)",
	} {
		if !strings.Contains(faults, s) {
			t.Errorf("faults table lacks %q", s)
		}
	}
	// The failing location is named with its error, since when, and the
	// devices the Location API says it has; the Bikeep source counts it.
	locs := page[strings.Index(page, `id="locations"`):strings.Index(page, `id="sources"`)]
	for _, s := range []string{
		fleet.failing.Name, fleet.failing.ID, "HTTP 500", `<span class="badge bad">down</span>`,
		fmt.Sprintf("none walked · %d expected", fleet.failing.Devices), "for 3m",
	} {
		if !strings.Contains(locs, s) {
			t.Errorf("locations with problems lack %q", s)
		}
	}
	walked := 3 * 8
	for _, s := range []string{
		`<span class="ok">up</span>, <span class="bad">1 of 4 locations failing</span>`,
		fmt.Sprintf("%d walked of %d expected", walked, walked+fleet.failing.Devices),
	} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	for _, s := range []string{"<code>bikeep</code>", "<code>copri/demo</code>", `<span class="badge ok">ready</span>`} {
		if !strings.Contains(page, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	// Secrets: the credentials the clients used, and the names of the
	// smart-lock key fields the rentals carry.
	for _, s := range []string{simClientSecret, simCopriPassword, "K_u", "K_seed", "K_a", "authcookie", "access_token"} {
		if strings.Contains(page, s) {
			t.Errorf("page contains secret material %q", s)
		}
	}
}
