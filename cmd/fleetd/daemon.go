package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/version"
	"golang.org/x/sync/errgroup"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/clients/copri"
	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/exporter"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/scrape"
	"github.com/fleetd/fleetd/internal/web"
)

// shutdownGrace bounds how long fleetd waits for walks and HTTP requests to
// end after SIGTERM before it exits anyway.
const shutdownGrace = 15 * time.Second

// daemon is one wired fleetd: clients, scraper, collector and HTTP server.
type daemon struct {
	log     *slog.Logger
	cfg     *config.Config
	scraper *scrape.Scraper
	server  *web.Server
}

// scraperDeps are the optional collaborators of newScraper; zero values
// mean none (api), the default HTTP client (hc) and the wall clock (now).
type scraperDeps struct {
	api       *exporter.APIMetrics
	hc        *http.Client
	now       func() time.Time
	onPublish func(*scrape.Snapshot)
}

// newScraper builds the vendor clients and the scraper of cfg.
func newScraper(cfg *config.Config, log *slog.Logger, deps scraperDeps) (*scrape.Scraper, error) {
	api, hc := deps.api, deps.hc
	bk, err := newBikeepClient(cfg.Bikeep, api, log, hc)
	if err != nil {
		return nil, err
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
			return nil, fmt.Errorf("copri %s: %w", op.Name, err)
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
	return scrape.New(scrape.Options{
		Devices:        bk,
		LocationIDs:    ids,
		Concurrency:    cfg.Bikeep.Concurrency,
		RequestTimeout: cfg.Bikeep.RequestTimeout,
		Operators:      ops,
		Health:         healthParams(cfg.Health),
		StaleAfter:     cfg.Health.StaleAfter,
		Now:            deps.now,
		OnPublish:      deps.onPublish,
		Logger:         log,
	})
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
	case !c.Token.IsZero():
		opts = append(opts, bikeep.WithStaticToken(c.Token))
	case c.TokenFile != "":
		opts = append(opts, bikeep.WithTokenFile(c.TokenFile))
	default:
		opts = append(opts, bikeep.WithClientCredentials(c.TokenURL, c.ClientID, c.ClientSecret))
	}
	cl, err := bikeep.NewClient(c.BaseURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("bikeep: %w", err)
	}
	return cl, nil
}

// newDaemon wires a daemon from cfg. It performs no I/O.
func newDaemon(cfg *config.Config, wf *webFlags, log *slog.Logger) (*daemon, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if err := exporter.RegisterBuildInfo(reg, version.Version, version.Revision); err != nil {
		return nil, err
	}
	reload, err := exporter.NewConfigReload(reg)
	if err != nil {
		return nil, err
	}
	reload.Record(true, time.Now())
	api, err := exporter.NewAPIMetrics(reg)
	if err != nil {
		return nil, err
	}
	// The metrics handler encodes each new snapshot in the walk's goroutine,
	// so scrapes never pay for it. Walks start only in run, after h is set.
	var metrics *exporter.Handler
	sc, err := newScraper(cfg, log, scraperDeps{api: api, onPublish: func(s *scrape.Snapshot) { metrics.Warm(s) }})
	if err != nil {
		return nil, err
	}
	metrics = exporter.NewHandler(reg, sc, cfg.Metrics.PerDevice, log)
	srv, err := web.New(web.Options{
		Flags:         wf.toolkit,
		TelemetryPath: wf.telemetryPath,
		// The fleet metrics are spliced in per snapshot, not registered.
		Metrics:    metrics,
		Registerer: reg,
		Ready:      sc.Ready,
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	return &daemon{log: log, cfg: cfg, scraper: sc, server: srv}, nil
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
	d.log.Info("fleetd listening", "addresses", addrs, "version", version.Version)
	if onListening != nil {
		onListening(addrs)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.server.Serve(gctx) })
	g.Go(func() error {
		return d.scraper.Run(gctx, d.cfg.Schedule.Devices, d.cfg.Schedule.Rentals)
	})
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
