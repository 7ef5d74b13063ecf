package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/remediate"
	"github.com/fleetd/fleetd/internal/scrape"
)

// liveConfig is one loaded config with everything built from it that can
// fail: vendor clients, scraper options, the walk schedule and the
// remediation policy, each compiled once. compile builds it whole, apply
// publishes it whole, and nothing changes it in between or after: a walk
// or a decision in progress keeps the one it started with.
type liveConfig struct {
	cfg      *config.Config
	hash     string
	scrape   *scrape.Prepared
	devices  *bikeep.Client
	schedule scrape.Schedule
	policy   *remediate.Policy
}

// compile builds the liveConfig of cfg. It changes nothing, so a reload
// whose config fails here leaves fleetd exactly as it was. On a reload it
// also refuses what only a restart can change.
func (d *daemon) compile(cfg *config.Config) (*liveConfig, error) {
	if cur := d.cur.Load(); cur != nil {
		if err := d.restartOnly(cur.cfg, cfg); err != nil {
			return nil, err
		}
	}
	opts, err := scraperOptions(cfg, d.log, d.scraperDeps())
	if err != nil {
		return nil, err
	}
	d.repl.scrapeOptions(&opts)
	prepared, err := scrape.Prepare(opts)
	if err != nil {
		return nil, err
	}
	devices, ok := opts.Devices.(*bikeep.Client)
	if !ok {
		return nil, fmt.Errorf("remediation needs a Bikeep client, got %T", opts.Devices)
	}
	sched, err := scrape.ParseSchedule(cfg.Schedule.Devices, cfg.Schedule.Rentals)
	if err != nil {
		return nil, err
	}
	policy, err := remediate.CompilePolicy(cfg.Remediation)
	if err != nil {
		return nil, err
	}
	return &liveConfig{cfg: cfg, hash: cfg.Hash(), scrape: prepared, devices: devices, schedule: sched, policy: policy}, nil
}

// restartOnly refuses a reload from cur to next that changes what only a
// restart can: the ledger, or remediation switched on without one open.
func (d *daemon) restartOnly(cur, next *config.Config) error {
	if next.Remediation.Ledger != cur.Remediation.Ledger {
		return fmt.Errorf("remediation.ledger: changing it from %q to %q needs a restart", cur.Remediation.RedactedLedger(), next.Remediation.RedactedLedger())
	}
	if err := checkClusterReload(cur, next); err != nil {
		return err
	}
	if next.Remediation.Enabled && d.engine == nil {
		return errors.New("remediation.enabled: switching remediation on needs a restart (fleetd started without it, so its ledger is not open)")
	}
	return nil
}

// apply publishes lc: each component takes its part whole, and lc becomes
// the config in force. Start and every reload end here. Nothing in it can
// fail: compile built and checked all of it.
func (d *daemon) apply(lc *liveConfig) {
	if d.cmd != nil {
		d.cmd.set(lc.devices)
	}
	d.scraper.Apply(lc.scrape)
	// After Apply: the rental walk is scheduled only with operators.
	d.scraper.SetSchedule(lc.schedule)
	if d.engine != nil {
		d.engine.ApplyPolicy(lc.policy)
		d.repl.setPolicy(lc.cfg.Remediation)
	}
	d.metrics.SetPerDevice(lc.cfg.Metrics.PerDevice)
	d.cur.Store(lc)
	d.reloads.Applied(lc.hash, time.Now())
}

// reload reads the config again and applies it without losing fleet state:
// clients, locations, operators, schedules, health tunables, the
// remediation policy and metric options change; last good data, fault
// episodes and the ledger stay. A config that does not load or compile, or
// that changes what only a restart can change, is rejected whole and the
// running config kept.
func (d *daemon) reload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	lc, err := d.loadAndCompile()
	if err != nil {
		d.reloads.Record(false, time.Now())
		d.log.Error("config reload failed; keeping the running config", "err", err)
		return err
	}
	d.apply(lc)
	d.log.Info("config reloaded", "hash", lc.hash)
	return nil
}

func (d *daemon) loadAndCompile() (*liveConfig, error) {
	if d.load == nil {
		return nil, errors.New("this fleetd has no config to reload")
	}
	cfg, err := d.load()
	if err != nil {
		return nil, err
	}
	return d.compile(cfg)
}
