package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/clients/httpx/httpxtest"
	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/remediate"
	"github.com/fleetd/fleetd/internal/scrape"
	"github.com/fleetd/fleetd/internal/secret"
)

const location = "loc-1"

// device is one entry of the device list as the vendor writes it. The
// device "stuck" has a hardware error that sync-device never cures.
func device(id, hardware, extra string) string {
	return fmt.Sprintf(`{"id":%q,"alias":"A-%s","type":"LOCKER","hardware_state":%q,"lock_state":"LOCKED",`+
		`"state":{"value":"LOCKED"},"heartbeat_v2":{"health":"HEALTHY"},"power_save_strategy":"NONE",`+
		`"commands":{"sync-device":"https://vendor.invalid/sync"}%s}`, id, id, hardware, extra)
}

var (
	stuck    = device("stuck", "ERROR", "")
	healthy  = device("fine", "NORMAL", "")
	goodList = `{"data":[` + healthy + `,` + stuck + `],"uri":"u"}`
)

// glitches are 200 answers of the device list that carry no usable list,
// or only part of it. In the partial ones the exhausted device itself is
// the entry that cannot be read.
var glitches = []struct{ name, body string }{
	{"data null", `{"data":null,"uri":"u"}`},
	{"data missing", `{"uri":"u"}`},
	{"empty object", `{}`},
	{"data not an array", `{"data":{"stuck":` + stuck + `}}`},
	{"one wrong-typed device", `{"data":[` + healthy + `,` + device("stuck", "ERROR", `,"has_camera":"yes"`) + `],"uri":"u"}`},
	{"one truncated device", `{"data":[` + healthy + `,` + stuck[:60]},
	{"one device record cut to its id", `{"data":[` + healthy + `,{"id":"stuck"}],"uri":"u"}`},
}

// vendor is the Bikeep API as far as a walk and a command need it: one
// location whose list body the test sets, and commands that end in SUCCESS
// without curing anything.
type vendor struct {
	mu    sync.Mutex
	list  string
	posts map[string]int // device id → sync-device POSTs received
	n     int
}

func (v *vendor) setList(body string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.list = body
}

func (v *vendor) postsTo(id string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.posts[id]
}

func (v *vendor) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /device/v1/locations/{id}/devices", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != location {
			http.NotFound(w, r)
			return
		}
		v.mu.Lock()
		body := v.list
		v.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	})
	mux.HandleFunc("POST /device/v1/devices/{id}/commands", func(w http.ResponseWriter, r *http.Request) {
		v.mu.Lock()
		v.posts[r.PathValue("id")]++
		v.n++
		id := fmt.Sprintf("cmd-%d", v.n)
		v.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"name":"sync-device","state":{"value":"SENT"}}`, id)
	})
	mux.HandleFunc("GET /device/v1/commands/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"name":"sync-device","state":{"value":"SUCCESS"}}`, r.PathValue("id"))
	})
	return mux
}

// stack is the real client, scraper and engine wired as the daemon wires
// them: every device walk feeds the engine.
type stack struct {
	t      *testing.T
	vendor *vendor
	clock  *httpxtest.Clock
	client *bikeep.Client
	policy config.Remediation
	scr    *scrape.Scraper

	mu   sync.Mutex
	eng  *remediate.Engine
	stop func() // stops eng and closes its ledger
}

// engine is the running engine; restartEngine replaces it.
func (s *stack) engine() *remediate.Engine {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.eng
}

// startEngine opens the ledger and runs a new engine over it.
func (s *stack) startEngine() {
	s.t.Helper()
	ledger, err := remediate.OpenLedger(s.policy.Ledger)
	if err != nil {
		s.t.Fatal(err)
	}
	eng, err := remediate.New(remediate.Options{Policy: s.policy, Commander: s.client, Ledger: ledger,
		Registerer: prometheus.NewPedanticRegistry(), Logger: slog.New(slog.DiscardHandler),
		Now: s.clock.Now, PollInterval: time.Millisecond})
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				s.t.Errorf("engine: %v", err)
			}
			if err := ledger.Close(); err != nil {
				s.t.Errorf("ledger: %v", err)
			}
		})
	}
	s.mu.Lock()
	s.eng, s.stop = eng, stop
	s.mu.Unlock()
	s.t.Cleanup(stop)
}

// restartEngine stops the engine and starts a new one from the ledger, as
// a restart of fleetd would, while the scraper keeps its state.
func (s *stack) restartEngine() {
	s.t.Helper()
	s.mu.Lock()
	stop := s.stop
	s.mu.Unlock()
	stop()
	s.startEngine()
}

func newStack(t *testing.T) *stack {
	t.Helper()
	v := &vendor{list: goodList, posts: map[string]int{}}
	srv := httptest.NewServer(v.handler())
	t.Cleanup(srv.Close)
	client, err := bikeep.NewClient(srv.URL, bikeep.WithHTTPClient(srv.Client()),
		bikeep.WithStaticToken(secret.String("token")), bikeep.WithRetry(1, time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	clk := httpxtest.NewClock(time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC))

	cfg := config.Default()
	policy := cfg.Remediation
	policy.MaxAttempts, policy.PowerCycleFromAttempt = 1, 1
	policy.MinFaultAge = 0
	policy.Ledger = filepath.Join(t.TempDir(), "remediation.db")
	s := &stack{t: t, vendor: v, clock: clk, client: client, policy: policy}
	s.startEngine()

	scr, err := scrape.New(scrape.Options{
		Devices: client, LocationIDs: []string{location}, Concurrency: 1, RequestTimeout: 5 * time.Second,
		Health: health.Params{LockMismatchGrace: cfg.Health.LockMismatchGrace, TransitionGrace: cfg.Health.TransitionGrace,
			RentalMaxDuration: cfg.Health.RentalMaxDuration},
		StaleAfter: cfg.Health.StaleAfter, ForgetAfter: policy.ForgetAfter,
		OnDeviceWalk: func(ctx context.Context, snap *scrape.Snapshot) { s.engine().Observe(ctx, snap) },
		Now:          clk.Now, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	s.scr = scr
	return s
}

// walk advances the clock by d, walks once and waits until no command is
// in flight, so that whatever the walk decided has reached the vendor.
func (s *stack) walk(d time.Duration) {
	s.t.Helper()
	s.clock.Advance(d)
	_ = s.scr.WalkDevices(context.Background())
	deadline := time.Now().Add(5 * time.Second)
	for len(s.engine().Status().InFlight) > 0 {
		if time.Now().After(deadline) {
			s.t.Fatalf("command still in flight after 5s: %+v", s.engine().Status().InFlight)
		}
		time.Sleep(time.Millisecond)
	}
}

func (s *stack) exhausted() string {
	var out []string
	for _, ep := range s.engine().Status().Exhausted {
		out = append(out, fmt.Sprintf("%s/%s first seen %s after %d", ep.DeviceID, ep.Fault, ep.FirstSeen.Format(time.TimeOnly), ep.Attempts))
	}
	return strings.Join(out, ", ")
}

// With max_attempts 1, a device whose one command did not cure it is
// exhausted, and stays so through any glitch of the device list and the
// recovery after it, also when the engine restarts from its ledger during
// the glitch: the vendor receives exactly one sync-device.
func TestListGlitchDoesNotResetExhaustedEpisode(t *testing.T) {
	for _, restart := range []bool{false, true} {
		for _, g := range glitches {
			name := g.name
			if restart {
				name += ", engine restarted during it"
			}
			t.Run(name, func(t *testing.T) { glitchAndRecover(t, g.body, restart) })
		}
	}
}

// glitchAndRecover exhausts the stuck device, serves body for four walks
// (restarting the engine from its ledger after the second if asked), then
// the good list again, and checks that the vendor saw one command in all.
func glitchAndRecover(t *testing.T, body string, restart bool) {
	s := newStack(t)
	s.walk(0)                // first sight: too young (one walk)
	s.walk(30 * time.Second) // second sight: the one attempt
	if n := s.vendor.postsTo("stuck"); n != 1 {
		t.Fatalf("sync-device POSTs after two walks = %d, want 1", n)
	}
	s.walk(30 * time.Second) // verified not fixed
	// Past the cooldown, so only the exhausted episode holds the
	// device back.
	s.walk(20 * time.Minute)
	const want = "stuck/hardware_error first seen 08:00:00 after 1"
	if got := s.exhausted(); got != want {
		t.Fatalf("exhausted before the glitch = %q, want %q", got, want)
	}

	s.vendor.setList(body)
	for i := range 4 {
		if restart && i == 2 {
			s.restartEngine()
		}
		s.walk(30 * time.Second)
	}
	if got := s.exhausted(); got != want {
		t.Errorf("exhausted during the glitch = %q, want %q", got, want)
	}
	s.vendor.setList(goodList)
	for range 4 {
		s.walk(30 * time.Second)
	}
	if got := s.exhausted(); got != want {
		t.Errorf("exhausted after the recovery = %q, want %q", got, want)
	}
	if n := s.vendor.postsTo("stuck"); n != 1 {
		t.Fatalf("sync-device POSTs to the exhausted device = %d, want 1 (max_attempts)", n)
	}
	if n := s.vendor.postsTo("fine"); n != 0 {
		t.Fatalf("sync-device POSTs to the healthy device = %d", n)
	}
}
