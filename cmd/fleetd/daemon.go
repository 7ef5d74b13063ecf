package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/version"
	"golang.org/x/sync/errgroup"

	"github.com/fleetd/fleetd/internal/alerts"
	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/clients/copri"
	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/exporter"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/remediate"
	"github.com/fleetd/fleetd/internal/remediate/store"
	"github.com/fleetd/fleetd/internal/scrape"
	"github.com/fleetd/fleetd/internal/web"
	"github.com/fleetd/fleetd/internal/web/status"
)

// shutdownGrace bounds how long fleetd waits for walks and HTTP requests to
// end after SIGTERM before it exits anyway.
const shutdownGrace = 15 * time.Second

// daemon is one wired fleetd: clients, scraper, collector and HTTP server.
type daemon struct {
	log *slog.Logger
	// load reads the config again for a reload (the file for `run`, the
	// built-in config for `demo`).
	load    func() (*config.Config, error)
	scraper *scrape.Scraper
	metrics *exporter.Handler
	api     *exporter.APIMetrics
	reloads *exporter.ConfigReload
	server  *web.Server
	// status is the page at "/"; it observes every device walk.
	status *status.Handler
	// engine, ledger and cmd are nil when remediation is off at start.
	engine *remediate.Engine
	ledger store.Store
	cmd    *commander
	// repl is the PostgreSQL ledger and slot leases (cluster.go); nil
	// with a bbolt ledger.
	repl *replication
	// hup delivers SIGHUP; nil in tests that do not want signals.
	hup <-chan os.Signal
	// now is the clock of walks and remediation (see withClock).
	now func() time.Time

	mu  sync.Mutex                 // serialises compile-and-apply (start, reloads)
	cur atomic.Pointer[liveConfig] // the config in force, published whole by apply
}

// scraperDeps are the optional collaborators of newScraper; zero values
// mean none (api), the default HTTP client (hc) and the wall clock (now).
type scraperDeps struct {
	api          *exporter.APIMetrics
	hc           *http.Client
	now          func() time.Time
	onPublish    func(*scrape.Snapshot)
	onDeviceWalk func(context.Context, *scrape.Snapshot)
}

// newScraper builds the vendor clients and the scraper of cfg.
func newScraper(cfg *config.Config, log *slog.Logger, deps scraperDeps) (*scrape.Scraper, error) {
	opts, err := scraperOptions(cfg, log, deps)
	if err != nil {
		return nil, err
	}
	return scrape.New(opts)
}

// scraperOptions builds the vendor clients of cfg and the scraper options
// around them; it performs no I/O, so a reload can build them before it
// commits to the new config.
func scraperOptions(cfg *config.Config, log *slog.Logger, deps scraperDeps) (scrape.Options, error) {
	api, hc := deps.api, deps.hc
	bk, err := newBikeepClient(cfg.Bikeep, api, log, hc)
	if err != nil {
		return scrape.Options{}, err
	}
	var ops []scrape.Operator
	for _, op := range cfg.Copri {
		opts := []copri.Option{copri.WithLogger(log.With("operator", op.Name))}
		if api != nil {
			opts = append(opts, copri.WithInstrumenter(api.For(scrape.CopriSource(op.Name))))
		}
		if hc != nil {
			opts = append(opts, copri.WithHTTPClient(hc))
		}
		cl, err := copri.NewClient(op.PrimaryURL, op.OperatorURL, copri.Credentials{
			MerchantID: op.MerchantID, UserID: op.UserID, Password: op.Password, HWID: op.HWID,
		}, opts...)
		if err != nil {
			return scrape.Options{}, fmt.Errorf("copri %s: %w", op.Name, err)
		}
		ops = append(ops, scrape.Operator{
			Name: op.Name, API: cl, BikesAll: op.BikesAll, RequestTimeout: op.RequestTimeout,
			Match: health.Match{Field: op.Match.Field(), TagPrefix: op.Match.TagPrefix()},
		})
	}
	var ids []string
	if !cfg.Bikeep.Locations.Auto {
		ids = cfg.Bikeep.Locations.IDs
	}
	return scrape.Options{
		Devices:        bk,
		LocationIDs:    ids,
		Concurrency:    cfg.Bikeep.Concurrency,
		RequestTimeout: cfg.Bikeep.RequestTimeout,
		Operators:      ops,
		Health:         healthParams(cfg.Health),
		StaleAfter:     cfg.Health.StaleAfter,
		ForgetAfter:    cfg.Remediation.ForgetAfter,
		Now:            deps.now,
		OnPublish:      deps.onPublish,
		OnDeviceWalk:   deps.onDeviceWalk,
		Logger:         log,
	}, nil
}

// pooledClient keeps an idle connection for every concurrent request: with
// http.DefaultTransport's two per host, a walk at concurrency 32 would redial
// most of its requests.
func pooledClient(concurrency int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = concurrency
	t.MaxIdleConns = 2 * concurrency
	return &http.Client{Transport: t}
}

func healthParams(h config.Health) health.Params {
	return health.Params{
		LockMismatchGrace: h.LockMismatchGrace,
		TransitionGrace:   h.TransitionGrace,
		RentalMaxDuration: h.RentalMaxDuration,
	}
}

func newBikeepClient(c config.Bikeep, api *exporter.APIMetrics, log *slog.Logger, hc *http.Client) (*bikeep.Client, error) {
	opts := []bikeep.Option{
		bikeep.WithLogger(log),
		bikeep.WithMaxBodyBytes(c.MaxBodyBytes),
		bikeep.WithUserAgent("fleetd/" + version.Version),
	}
	if api != nil {
		opts = append(opts, bikeep.WithInstrumenter(api.For(scrape.SourceBikeep)))
	}
	if hc == nil {
		hc = pooledClient(c.Concurrency)
	}
	opts = append(opts, bikeep.WithHTTPClient(hc))
	switch {
	case c.TokenPath() != "":
		// Read again on change and after a 401, so a rotated token is
		// picked up without a reload.
		opts = append(opts, bikeep.WithTokenFile(c.TokenPath()))
	case !c.Token.IsZero():
		opts = append(opts, bikeep.WithStaticToken(c.Token))
	default:
		opts = append(opts, bikeep.WithClientCredentials(c.TokenURL, c.ClientID, c.ClientSecret))
	}
	cl, err := bikeep.NewClient(c.BaseURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("bikeep: %w", err)
	}
	return cl, nil
}

// daemonOptions are the optional settings of newDaemon; the zero value is
// the wall clock and the remediation engine's own poll interval.
type daemonOptions struct {
	now          func() time.Time
	pollInterval time.Duration
}

// daemonOption sets one of daemonOptions.
type daemonOption func(*daemonOptions)

// withClock replaces the wall clock of walks (fault ages, staleness), of
// remediation (min_fault_age, cooldowns, command timeouts) and of the status
// page (ages, the hour of ended faults). The demo under test runs on a clock
// faster than real time, so minutes of fleet life fit in seconds; cron
// schedules and HTTP timeouts stay on real time.
func withClock(now func() time.Time) daemonOption {
	return func(o *daemonOptions) { o.now = now }
}

// withPollInterval sets how often an in-flight command is polled (real
// time); it goes with a fast clock, or commands would be seen to end late.
func withPollInterval(d time.Duration) daemonOption {
	return func(o *daemonOptions) { o.pollInterval = d }
}

// newDaemon wires a daemon from cfg. It performs no I/O. load reads the
// config again on a reload; nil disables reloads. cfg goes the way of every
// reload: compiled whole, then applied (compile, apply).
func newDaemon(cfg *config.Config, load func() (*config.Config, error), wf *webFlags, log *slog.Logger, options ...daemonOption) (*daemon, error) {
	var o daemonOptions
	for _, set := range options {
		set(&o)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if err := exporter.RegisterBuildInfo(reg, version.Version, version.Revision); err != nil {
		return nil, err
	}
	reloads, err := exporter.NewConfigReload(reg)
	if err != nil {
		return nil, err
	}
	api, err := exporter.NewAPIMetrics(reg)
	if err != nil {
		return nil, err
	}
	d := &daemon{log: log, load: load, api: api, reloads: reloads, now: o.now}
	if d.repl, err = openReplication(cfg, reg, log); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	lc, err := d.compile(cfg)
	if err != nil {
		return nil, err
	}
	if d.scraper, err = scrape.New(lc.scrape.Options()); err != nil {
		return nil, err
	}
	if cfg.Remediation.Enabled {
		if err := d.newEngine(cfg, reg, o.pollInterval); err != nil {
			return nil, err
		}
	}
	d.metrics = exporter.NewHandler(reg, d.scraper, cfg.Metrics.PerDevice, log)
	d.metrics.ReportCopri(d.repl.exportsCopri())
	if err := d.newServer(wf, reg); err != nil {
		return nil, err
	}
	d.apply(lc)
	return d, nil
}

// scraperDeps are the collaborators of the daemon's scraper. The metrics
// handler encodes each new snapshot in the walk's goroutine, so scrapes
// never pay for it. Walks start only in run, after all are set.
func (d *daemon) scraperDeps() scraperDeps {
	return scraperDeps{
		api:       d.api,
		now:       d.now,
		onPublish: func(s *scrape.Snapshot) { d.metrics.Warm(s) },
		onDeviceWalk: func(ctx context.Context, s *scrape.Snapshot) {
			if d.engine != nil {
				d.engine.Observe(ctx, s)
			}
			if d.status != nil {
				d.status.Observe(s) // after the engine: its decisions on s
			}
		},
	}
}

// newServer builds the status page, the Alertmanager webhook and the HTTP
// server around them.
func (d *daemon) newServer(wf *webFlags, reg *prometheus.Registry) error {
	var err error
	d.status, err = status.NewHandler(status.Options{
		Snapshot:      d.scraper.Snapshot,
		Remediation:   d.statusRemediation,
		Version:       version.Version,
		TelemetryPath: wf.telemetryPath,
		AdminAPI:      wf.adminAPI && d.engine != nil,
		Cluster:       d.repl.status,
		Logger:        d.log,
		Now:           d.now,
	})
	if err != nil {
		return err
	}
	var webhook http.Handler
	if d.engine != nil {
		if webhook, err = alerts.NewHandler(alertRemediator{d.engine}, d.log.With("component", "alerts"), reg); err != nil {
			return err
		}
	}
	d.server, err = web.New(web.Options{
		Flags:         wf.toolkit,
		TelemetryPath: wf.telemetryPath,
		// The fleet metrics are spliced in per snapshot, not registered.
		Metrics:    d.metrics,
		Registerer: reg,
		Ready:      d.scraper.Ready,
		Home:       d.status,
		Routes:     func(mux *http.ServeMux) { d.routes(mux, wf, webhook) },
		Logger:     d.log,
	})
	return err
}

func (d *daemon) routes(mux *http.ServeMux, wf *webFlags, webhook http.Handler) {
	if webhook != nil {
		mux.Handle("/api/v1/alerts", webhook)
	}
	if !wf.adminAPI {
		return
	}
	if d.load != nil {
		mux.Handle("/-/reload", web.AdminGuard(http.HandlerFunc(d.handleReload)))
	}
	if d.engine != nil {
		api := web.AdminGuard(d.engine.APIHandler())
		mux.Handle(remediate.RouteStatus, api)
		mux.Handle(remediate.RouteStatus+"/", api)
	}
}

// newEngine opens the ledger and builds the remediation engine; apply gives
// it its policy and the Bikeep client of the config. A ledger that cannot be
// opened, is corrupt or is locked by another fleetd stops start-up:
// remediating without its history could resend commands.
func (d *daemon) newEngine(cfg *config.Config, reg prometheus.Registerer, pollInterval time.Duration) error {
	d.cmd = &commander{}
	ledger, err := d.repl.openLedger(cfg)
	if err != nil {
		return fmt.Errorf("remediation ledger: %w", err)
	}
	engine, err := remediate.New(remediate.Options{
		Policy:       cfg.Remediation,
		Commander:    d.cmd,
		Ledger:       ledger,
		Owns:         d.repl.owns(),
		Fleet:        d.repl.fleet(),
		MaySend:      d.repl.maySend(),
		Registerer:   reg,
		Logger:       d.log.With("component", "remediation"),
		Now:          d.now,
		PollInterval: pollInterval,
	})
	if err != nil {
		ledger.Close()
		return err
	}
	d.engine, d.ledger = engine, ledger
	return nil
}

// statusRemediation reads the policy from the config in force, without mu:
// the page reads it from the walk that a reload may be waiting on.
func (d *daemon) statusRemediation() *status.Remediation {
	if d.engine == nil {
		return nil
	}
	return statusRemediation(d.engine, d.cur.Load().policy)
}

// handleReload is POST /-/reload (admin API only), as in Prometheus.
func (d *daemon) handleReload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		w.Header().Set("Allow", "POST, PUT")
		http.Error(w, "only POST or PUT requests allowed", http.StatusMethodNotAllowed)
		return
	}
	if err := d.reload(); err != nil {
		http.Error(w, "failed to reload config: "+err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, "config reloaded")
}

// run listens, then serves and walks until ctx is done. onListening, if set,
// is called with the bound addresses once listening.
func (d *daemon) run(ctx context.Context, onListening func(addrs []string)) error {
	if err := d.server.Listen(); err != nil {
		return err
	}
	var addrs []string
	for _, a := range d.server.Addrs() {
		addrs = append(addrs, a.String())
	}
	d.log.Info("fleetd listening", "addresses", addrs, "version", version.Version, "config_hash", d.cur.Load().hash)
	if onListening != nil {
		onListening(addrs)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.server.Serve(gctx) })
	// Runs the schedule apply set, and any a reload sets later.
	g.Go(func() error { return d.scraper.Run(gctx) })
	d.repl.start(gctx, g, d.engine)
	defer d.repl.close()
	if d.engine != nil {
		// Resumes polling the commands the ledger holds in flight.
		g.Go(func() error { return d.engine.Run(gctx) })
		defer func() {
			if err := d.ledger.Close(); err != nil {
				d.log.Error("closing the remediation ledger", "err", err)
			}
		}()
	}
	if d.hup != nil {
		g.Go(func() error {
			for {
				select {
				case <-gctx.Done():
					return nil
				case <-d.hup:
					_ = d.reload() // logged and counted; the old config stays
				}
			}
		})
	}
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err := <-done:
		return err
	case <-gctx.Done():
	}
	d.log.Info("shutting down")
	select {
	case err := <-done:
		return err
	case <-time.After(shutdownGrace):
		return errors.New("shutdown did not finish in time; exiting anyway")
	}
}
