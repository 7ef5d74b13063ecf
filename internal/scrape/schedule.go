package scrape

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/robfig/cron/v3"

	"github.com/fleetd/fleetd/internal/config"
)

// Schedule is the pair of walk schedules, compiled from their cron specs
// once (config load), never on a walk's turn.
type Schedule struct {
	// Devices is required: Run refuses to start without it.
	Devices cron.Schedule
	// Rentals is not scheduled while no operator is configured; nil means
	// no rental walks at all.
	Rentals cron.Schedule
}

// ParseSchedule compiles the two specs with fleetd's one cron parser
// (config.ParseCron). An empty rentalsSpec leaves Rentals nil.
func ParseSchedule(devicesSpec, rentalsSpec string) (Schedule, error) {
	dev, err := config.ParseCron(devicesSpec)
	if err != nil {
		return Schedule{}, fmt.Errorf("schedule.devices %q: %w", devicesSpec, err)
	}
	sch := Schedule{Devices: dev}
	if rentalsSpec != "" {
		if sch.Rentals, err = config.ParseCron(rentalsSpec); err != nil {
			return Schedule{}, fmt.Errorf("schedule.rentals %q: %w", rentalsSpec, err)
		}
	}
	return sch, nil
}

// Run walks devices and rentals on the schedule last given to SetSchedule
// until ctx is done, starting with one walk of each right away. A walk still
// running when its next turn comes is skipped, never overlapped; a panicking
// walk is logged and the schedule goes on. Run returns after the walks in
// progress have ended. SetSchedule changes the schedule of a running Run.
func (s *Scraper) Run(ctx context.Context) error {
	// Recover must be inside SkipIfStillRunning: cron v3.0.1's skip guard
	// does not release its token when the job panics, so with Recover
	// outside, one panicking walk would skip every later turn for good.
	// The chain wraps each job once for the whole Run, so rescheduled
	// entries and the first walks share one skip-if-running guard.
	chain := cron.NewChain(cron.SkipIfStillRunning(cronLogger{s.log}), cron.Recover(cronLogger{s.log}))
	c := cron.New(cron.WithLogger(cronLogger{s.log}))
	run := &runningCron{
		cron:      c,
		devJob:    chain.Then(cron.FuncJob(func() { _ = s.WalkDevices(ctx) })),
		rentalJob: chain.Then(cron.FuncJob(func() { _ = s.WalkRentals(ctx) })),
	}
	s.schedMu.Lock()
	switch {
	case s.running != nil:
		s.schedMu.Unlock()
		return errors.New("scrape: Run is already running")
	case s.schedule.Devices == nil:
		s.schedMu.Unlock()
		return errors.New("scrape: Run without a schedule (SetSchedule)")
	}
	s.running = run
	run.set(s.schedule, s.hasOperators())
	// SetSchedule changes run's entries under schedMu from here on.
	firstRental := run.rentID != 0
	s.schedMu.Unlock()
	defer func() {
		s.schedMu.Lock()
		s.running = nil
		s.schedMu.Unlock()
	}()
	c.Start()
	var first sync.WaitGroup
	first.Go(run.devJob.Run)
	if firstRental {
		first.Go(run.rentalJob.Run)
	}
	<-ctx.Done()
	<-c.Stop().Done()
	first.Wait()
	return nil
}

// SetSchedule sets the walk schedule (start and config reload). A running
// Run takes it at once: walks in progress are not interrupted, and the
// rental entry is dropped or added as the configured operators require.
func (s *Scraper) SetSchedule(sch Schedule) {
	if sch.Devices == nil {
		// Only a Schedule built by hand lacks it; keep the walks going.
		s.log.Error("scrape: SetSchedule without a device schedule; keeping the schedule in force")
		return
	}
	s.schedMu.Lock()
	defer s.schedMu.Unlock()
	s.schedule = sch
	if s.running != nil {
		s.running.set(sch, s.hasOperators())
	}
}

// Reschedule parses the specs and sets them (SetSchedule). A bad spec
// changes nothing. With a running Run and no operator configured, the
// rentals spec is not needed and not checked.
func (s *Scraper) Reschedule(devicesSpec, rentalsSpec string) error {
	s.schedMu.Lock()
	running := s.running != nil
	s.schedMu.Unlock()
	if running && !s.hasOperators() {
		rentalsSpec = ""
	}
	sch, err := ParseSchedule(devicesSpec, rentalsSpec)
	if err != nil {
		return err
	}
	s.SetSchedule(sch)
	return nil
}

func (s *Scraper) hasOperators() bool { return len(s.options().Operators) > 0 }

// runningCron is the cron of a running Run.
type runningCron struct {
	cron              *cron.Cron
	devJob, rentalJob cron.Job
	devID, rentID     cron.EntryID
}

// set replaces the entries with those of sch; it cannot fail, sch being
// compiled already.
func (rc *runningCron) set(sch Schedule, rentals bool) {
	if rc.devID != 0 {
		rc.cron.Remove(rc.devID)
	}
	rc.devID = rc.cron.Schedule(sch.Devices, rc.devJob)
	if rc.rentID != 0 {
		rc.cron.Remove(rc.rentID)
		rc.rentID = 0
	}
	if rentals && sch.Rentals != nil {
		rc.rentID = rc.cron.Schedule(sch.Rentals, rc.rentalJob)
	}
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
