package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/fleetd/fleetd/internal/sim"
)

// simCmd is `fleetd sim`: the simulated Bikeep + COPRI backends alone.
type simCmd struct {
	app            *kingpin.Application
	stdout, stderr io.Writer
	// ctx, when set (tests), replaces the SIGINT/SIGTERM context.
	ctx context.Context

	listen   string
	opts     sim.Options
	logLevel string // only when the app has no global --log.level
}

func newSimCmd(app *kingpin.Application, stdout, stderr io.Writer) *simCmd {
	c := &simCmd{app: app, stdout: stdout, stderr: stderr, opts: sim.DefaultOptions()}
	o := &c.opts
	cmd := app.Command("sim", fmt.Sprintf(
		"Run the simulated Bikeep Parking Device + Location APIs and COPRI /APIjsonserver with fault injection. "+
			"Demo credentials: Bikeep client %s / %s; COPRI merchant %s, user %s, password %s.",
		sim.DefaultClientID, sim.DefaultClientSecret, sim.DefaultCopriMerchant, sim.DefaultCopriUser, sim.DefaultCopriPassword))
	cmd.Flag("listen", "Address to listen on (\":0\" picks a free port).").Default("127.0.0.1:8080").StringVar(&c.listen)
	cmd.Flag("locations", "Number of locations.").Default("20").IntVar(&o.Locations)
	cmd.Flag("devices-per-location", "Devices per location.").Default("12").IntVar(&o.DevicesPerLocation)
	cmd.Flag("latency", "Latency added to every API request.").Default("20ms").DurationVar(&o.Latency)
	cmd.Flag("seed", "Seed of the generated fleet and of fault evolution (same seed, same fleet).").Default("1").Int64Var(&o.Seed)
	cmd.Flag("rentals", "Open COPRI rentals at start (0: about 2% of rental bikes, at least 3).").Default("0").IntVar(&o.Rentals)
	cmd.Flag("fault-rate", "Per device per minute probability that a new fault starts.").Default("0.001").Float64Var(&o.FaultRate)
	cmd.Flag("cure-rate", "Per faulty device per minute probability that its faults clear by themselves.").Default("0.02").Float64Var(&o.CureRate)
	cmd.Flag("error-rate", "Fraction of API requests answered with a transport fault (5xx, 429, malformed JSON, hang).").Default("0").Float64Var(&o.ErrorRate)
	cmd.Flag("sync-cure-probability", "Chance that a sync-device cures a recoverable fault.").Default("0.9").Float64Var(&o.SyncCureProbability)
	cmd.Flag("hang-duration", "How long a hanging response hangs.").Default("60s").DurationVar(&o.HangDuration)
	cmd.Flag("command-step-delay", "Delay between the NOT_SENT → SENT → RECEIVED → final steps of a command.").Default("500ms").DurationVar(&o.CommandStepDelay)
	cmd.Flag("token-ttl", "Lifetime of an OAuth2 access token.").Default("1h").DurationVar(&o.TokenTTL)
	cmd.Flag("client-id", "Accepted OAuth2 client id.").Default(sim.DefaultClientID).StringVar(&o.ClientID)
	cmd.Flag("client-secret", "Accepted OAuth2 client secret.").Default(sim.DefaultClientSecret).StringVar(&o.ClientSecret)
	cmd.Flag("copri-merchant", "Accepted COPRI merchant_id.").Default(sim.DefaultCopriMerchant).StringVar(&o.CopriMerchant)
	cmd.Flag("copri-user", "Accepted COPRI user_id.").Default(sim.DefaultCopriUser).StringVar(&o.CopriUser)
	cmd.Flag("copri-password", "Accepted COPRI user_pw.").Default(sim.DefaultCopriPassword).StringVar(&o.CopriPassword)
	// fleetd's --log.* flags are global; define --log.level here only if
	// the app does not (kingpin refuses duplicate flags).
	if app.GetFlag("log.level") == nil {
		cmd.Flag("log.level", "Only log messages with the given severity or above. One of: [debug, info, warn, error]").
			Default("info").EnumVar(&c.logLevel, "debug", "info", "warn", "error")
	}
	return c
}

// logger builds the logger from the global --log.* flags (or our own
// --log.level): tint on a terminal, JSON with --log.format=json.
func (c *simCmd) logger() *slog.Logger {
	lf := &logFlags{level: c.logLevel, format: "text"}
	if f := c.app.GetFlag("log.level"); f != nil && c.logLevel == "" {
		lf.level = f.Model().String()
	}
	if f := c.app.GetFlag("log.format"); f != nil {
		lf.format = f.Model().String()
	}
	if lf.level == "" {
		lf.level = "info"
	}
	return lf.logger(c.stderr)
}

func (c *simCmd) run() int {
	log := c.logger()
	ctx := c.ctx
	if ctx == nil {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	opts := c.opts
	opts.Logger = log.With("component", "sim")
	s, err := sim.New(opts)
	if err != nil {
		fmt.Fprintf(c.stderr, "fleetd: %v\n", err)
		return 1
	}
	base, err := s.Start(ctx, c.listen)
	if err != nil {
		fmt.Fprintf(c.stderr, "fleetd: %v\n", err)
		return 1
	}
	// Show the demo secrets (they are in --help anyway), never ones the
	// operator chose.
	secretHint := func(v, def, flag string) string {
		if v == def {
			return v
		}
		return "(as given by " + flag + ")"
	}
	fmt.Fprintf(c.stdout, "fleetd simulator is running (Ctrl-C stops it): %d locations × %d devices, seed %d\n"+
		"  bikeep base_url:    %s\n"+
		"  bikeep token_url:   %s/oauth2/token   client_id %s, client_secret %s\n"+
		"  copri primary_url:  %s   (operator_url is the same; endpoint %s/APIjsonserver)\n"+
		"  copri login:        merchant_id %s, user_id %s, password %s\n"+
		"  test hooks:         GET %s/sim/v1/stats, POST %s/sim/v1/devices/{id}/faults {\"fault\":\"dead\"}\n",
		opts.Locations, opts.DevicesPerLocation, opts.Seed,
		base,
		base, opts.ClientID, secretHint(opts.ClientSecret, sim.DefaultClientSecret, "--client-secret"),
		base, base,
		opts.CopriMerchant, opts.CopriUser, secretHint(opts.CopriPassword, sim.DefaultCopriPassword, "--copri-password"),
		base, base)

	<-ctx.Done()
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		log.Error("sim: shutdown timed out")
		return 1
	}
	log.Info("sim: stopped")
	return 0
}
