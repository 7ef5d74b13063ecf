package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/remediate"
	"github.com/fleetd/fleetd/internal/sim"
)

// demoCmd is `fleetd demo`: the simulator on loopback with faults injected and
// the daemon against it, with a built-in configuration.
type demoCmd struct {
	web       *webFlags
	logs      *logFlags
	stdout    io.Writer
	stderr    io.Writer
	seed      int64
	locations int
	devices   int
	simListen string
	ledgerDir string
	// ctx, when set, replaces the signal context (tests).
	ctx context.Context
	// onReady, when set, receives the metrics base URL (tests).
	onReady func(baseURL string)
	// speed > 1 runs the demo's fleet that many times faster than real time
	// (tests): the simulator, the walks' fault ages and remediation share a
	// clock that runs fast, and the walk schedules and command polling are
	// shortened to match. Grace periods, min_fault_age and cooldowns keep
	// their configured values, measured on the fast clock.
	speed int
}

func newDemoCmd(app *kingpin.Application, logs *logFlags, stdout, stderr io.Writer) *demoCmd {
	c := &demoCmd{logs: logs, stdout: stdout, stderr: stderr}
	cmd := app.Command("demo", "Run the simulator on loopback with faults injected, and fleetd against it with a built-in configuration.")
	c.web = addWebFlags(cmd, "127.0.0.1:9870")
	cmd.Flag("demo.seed", "Seed of the simulated fleet.").Default("1").Int64Var(&c.seed)
	cmd.Flag("demo.locations", "Simulated locations.").Default("20").IntVar(&c.locations)
	cmd.Flag("demo.devices-per-location", "Simulated devices per location.").Default("12").IntVar(&c.devices)
	cmd.Flag("demo.sim-listen", "Listen address of the simulator.").Default("127.0.0.1:0").StringVar(&c.simListen)
	cmd.Flag("demo.ledger-dir", "Directory for the remediation ledger (default: a new temporary directory).").StringVar(&c.ledgerDir)
	return c
}

// demoFaults are injected at start so that every fault kind, and so every
// metric, shows within the first minute.
var demoFaults = []sim.FaultKind{
	sim.FaultUnhealthy, sim.FaultDead, sim.FaultLongDead, sim.FaultHardwareError, sim.FaultNotResponding,
	sim.FaultStuckTransition, sim.FaultLockMismatch, sim.FaultRentalLockMismatch, sim.FaultOverdueRental,
	sim.FaultUnknownState, sim.FaultDisabled,
}

func (c *demoCmd) run() int {
	log := c.logs.logger(c.stderr)
	ctx := c.ctx
	if ctx == nil {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	speed := max(c.speed, 1)
	now := fastClock(speed)
	opts := sim.DefaultOptions()
	opts.Seed = c.seed
	opts.Locations, opts.DevicesPerLocation = c.locations, c.devices
	opts.Latency = 20 * time.Millisecond
	opts.FaultRate = 0.002 // per device per minute: a fresh fault every few minutes
	opts.CureRate = 0.02   // faults also clear by themselves now and then
	opts.ErrorRate = 0.01  // 5xx, 429, malformed JSON and hangs, so retries show
	opts.HangDuration = 6 * time.Second / time.Duration(speed)
	opts.Now = now
	opts.Logger = log.With("component", "sim")
	s, err := sim.New(opts)
	if err != nil {
		return exitError(c.stderr, err)
	}
	simURL, err := s.Start(ctx, c.simListen)
	if err != nil {
		return exitError(c.stderr, fmt.Errorf("simulator: %w", err))
	}
	injectDemoFaults(s, log)

	dir := c.ledgerDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "fleetd-demo-"); err != nil {
			return exitError(c.stderr, err)
		}
		defer os.RemoveAll(dir)
	}
	cfg, err := config.Parse([]byte(demoConfig(simURL, filepath.Join(dir, "remediation.db"), speed)), dir)
	if err != nil {
		return exitError(c.stderr, fmt.Errorf("built-in demo config: %w", err))
	}
	// A reload in the demo re-reads the built-in config.
	d, err := newDaemon(cfg, func() (*config.Config, error) {
		return config.Parse([]byte(demoConfig(simURL, filepath.Join(dir, "remediation.db"), speed)), dir)
	}, c.web, log, withClock(now), withPollInterval(remediate.DefaultPollInterval/time.Duration(speed)))
	if err != nil {
		return exitError(c.stderr, err)
	}
	err = d.run(ctx, func(addrs []string) {
		base := "http://" + hostPort(addrs[0])
		fmt.Fprintf(c.stdout, "fleetd demo is running (Ctrl-C stops it)\n  status:     %s/\n  metrics:    %s%s\n  ready:      %s/-/ready\n  simulator:  %s  (stats: %s/sim/v1/stats)\n",
			base, base, c.web.telemetryPath, base, simURL, simURL)
		if c.onReady != nil {
			c.onReady(base)
		}
	})
	if err != nil {
		log.Error("fleetd demo stopped", "err", err)
		return 1
	}
	return 0
}

// hostPort turns a wildcard bind address into one a browser can open.
func hostPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// injectDemoFaults puts each fault kind on its own device, trying devices in
// order until the simulator accepts one (not every kind fits every type).
func injectDemoFaults(s *sim.Sim, log *slog.Logger) {
	used := map[string]bool{}
	locs := s.Locations()
	for i, kind := range demoFaults {
		done := false
		// Start at a different location per kind so faults spread out.
		for j := 0; j < len(locs) && !done; j++ {
			loc := locs[(i+j)%len(locs)]
			for _, dev := range s.Devices(loc.ID) {
				if used[dev.ID] {
					continue
				}
				if err := s.SetFault(dev.ID, kind); err == nil {
					used[dev.ID], done = true, true
					break
				}
			}
		}
		if !done {
			log.Warn("demo: no simulated device accepts this fault", "fault", kind)
		}
	}
	// One device whose fault sync-device cannot cure, so remediation is seen
	// retrying, escalating to power_cycle and finally giving up (exhausted).
	stubborn := false
	for i := 0; i < len(locs) && !stubborn; i++ {
		for _, dev := range s.Devices(locs[(i+len(demoFaults))%len(locs)].ID) {
			if used[dev.ID] || !dev.CanSync() {
				continue
			}
			if s.SetFault(dev.ID, sim.FaultUnhealthy) == nil && s.SetStubborn(dev.ID, true) == nil {
				used[dev.ID], stubborn = true, true
				break
			}
		}
	}
	if len(locs) > 1 {
		// One location answers 500s, so fleet_location_up 0 shows too.
		s.SetLocationError(locs[len(locs)-1].ID, 500)
	}
}

// fastClock returns a clock that runs speed times faster than the wall
// clock from now on; speed 1 is time.Now itself.
func fastClock(speed int) func() time.Time {
	if speed <= 1 {
		return time.Now
	}
	start := time.Now()
	return func() time.Time { return start.Add(time.Since(start) * time.Duration(speed)) }
}

// demoConfig is the built-in configuration of `fleetd demo`: short schedules
// and graces so faults show within a minute. At a speed above 1 (tests),
// the walk schedules are that much shorter, since cron runs on real time.
func demoConfig(simURL, ledger string, speed int) string {
	every := func(d time.Duration) string {
		return strconv.Quote("@every " + (d / time.Duration(max(speed, 1))).String())
	}
	r := strings.NewReplacer("SIM", simURL, "LEDGER", ledger,
		"DEVICES_EVERY", every(10*time.Second), "RENTALS_EVERY", every(15*time.Second))
	return r.Replace(`
bikeep:
  base_url: SIM
  token_url: SIM/oauth2/token
  client_id: fleetd-demo
  client_secret: fleetd-demo-secret
  locations: auto
  concurrency: 8
  request_timeout: 5s
copri:
  - name: demo
    primary_url: SIM
    operator_url: SIM
    merchant_id: "12345678"
    user_id: demo@example.org
    password: demo-password
    hw_id: fleetd-demo-monitor-0001
    bikes_all: true
    match: {bike_to_device: alias}
schedule:
  devices: DEVICES_EVERY
  rentals: RENTALS_EVERY
health:
  lock_mismatch_grace: 20s
  transition_grace: 1m
  rental_max_duration: 24h
  stale_after: 2m
remediation:
  enabled: true
  min_fault_age: 20s
  cooldown: 30s
  max_attempts: 2
  power_cycle_from_attempt: 2
  command_timeout: 1m
  ledger: LEDGER
metrics:
  per_device: true
`)
}
