package scrape

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/robfig/cron/v3"
)

// CronParser is the schedule syntax fleetd accepts: standard five fields, an
// optional leading seconds field, and descriptors such as "@every 30s".
func CronParser() cron.Parser {
	return cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
}

// Run walks devices and rentals on their cron schedules until ctx is done,
// starting with one walk of each right away. A walk still running when its
// next turn comes is skipped, never overlapped; a panicking walk is logged and
// the schedule goes on. Run returns after the walks in progress have ended.
// Reschedule changes the schedules of a running Run.
func (s *Scraper) Run(ctx context.Context, devicesSpec, rentalsSpec string) error {
	parser := CronParser()
	// Recover must be inside SkipIfStillRunning: cron v3.0.1's skip guard
	// does not release its token when the job panics, so with Recover
	// outside, one panicking walk would skip every later turn for good.
	// The chain wraps each job once for the whole Run, so rescheduled
	// entries and the first walks share one skip-if-running guard.
	chain := cron.NewChain(cron.SkipIfStillRunning(cronLogger{s.log}), cron.Recover(cronLogger{s.log}))
	c := cron.New(cron.WithParser(parser), cron.WithLogger(cronLogger{s.log}))
	sch := &schedule{
		cron:      c,
		parser:    parser,
		devJob:    chain.Then(cron.FuncJob(func() { _ = s.WalkDevices(ctx) })),
		rentalJob: chain.Then(cron.FuncJob(func() { _ = s.WalkRentals(ctx) })),
	}
	if err := sch.set(devicesSpec, rentalsSpec, len(s.options().Operators) > 0); err != nil {
		return err
	}
	s.schedMu.Lock()
	if s.sched != nil {
		s.schedMu.Unlock()
		return errors.New("scrape: Run is already running")
	}
	s.sched = sch
	s.schedMu.Unlock()
	defer func() {
		s.schedMu.Lock()
		s.sched = nil
		s.schedMu.Unlock()
	}()
	c.Start()
	var first sync.WaitGroup
	first.Go(sch.devJob.Run)
	if sch.rentID != 0 {
		first.Go(sch.rentalJob.Run)
	}
	<-ctx.Done()
	<-c.Stop().Done()
	first.Wait()
	return nil
}

// Reschedule replaces the schedules of the running Run (config reload).
// Walks in progress are not interrupted; the rental schedule is dropped or
// added as the configured operators require. Without a running Run it only
// validates the specs.
func (s *Scraper) Reschedule(devicesSpec, rentalsSpec string) error {
	s.schedMu.Lock()
	defer s.schedMu.Unlock()
	if s.sched == nil {
		p := CronParser()
		if _, err := p.Parse(devicesSpec); err != nil {
			return fmt.Errorf("schedule.devices %q: %w", devicesSpec, err)
		}
		if _, err := p.Parse(rentalsSpec); err != nil {
			return fmt.Errorf("schedule.rentals %q: %w", rentalsSpec, err)
		}
		return nil
	}
	return s.sched.set(devicesSpec, rentalsSpec, len(s.options().Operators) > 0)
}

// schedule is the cron of a running Run.
type schedule struct {
	cron              *cron.Cron
	parser            cron.Parser
	devJob, rentalJob cron.Job
	devID, rentID     cron.EntryID
}

// set parses both specs and only then replaces the entries, so a bad spec
// leaves the old schedule running.
func (sc *schedule) set(devicesSpec, rentalsSpec string, rentals bool) error {
	dev, err := sc.parser.Parse(devicesSpec)
	if err != nil {
		return fmt.Errorf("schedule.devices %q: %w", devicesSpec, err)
	}
	var rent cron.Schedule
	if rentals {
		if rent, err = sc.parser.Parse(rentalsSpec); err != nil {
			return fmt.Errorf("schedule.rentals %q: %w", rentalsSpec, err)
		}
	}
	if sc.devID != 0 {
		sc.cron.Remove(sc.devID)
	}
	sc.devID = sc.cron.Schedule(dev, sc.devJob)
	if sc.rentID != 0 {
		sc.cron.Remove(sc.rentID)
		sc.rentID = 0
	}
	if rent != nil {
		sc.rentID = sc.cron.Schedule(rent, sc.rentalJob)
	}
	return nil
}

// cronLogger adapts slog to cron.Logger. Skipped runs are warnings: a walk
// outlasting its schedule means the schedule or the concurrency is wrong.
type cronLogger struct{ log *slog.Logger }

func (l cronLogger) Info(msg string, kv ...any) {
	if msg == "skip" {
		l.log.Warn("walk still running at its next scheduled time; skipped this turn")
		return
	}
	l.log.Debug("cron: "+msg, kv...)
}

func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.log.Error("cron: "+msg, append(kv, "err", err)...)
}
