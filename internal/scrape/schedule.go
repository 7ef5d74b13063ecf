package scrape

import (
	"context"
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
func (s *Scraper) Run(ctx context.Context, devicesSpec, rentalsSpec string) error {
	parser := CronParser()
	devSched, err := parser.Parse(devicesSpec)
	if err != nil {
		return fmt.Errorf("schedule.devices %q: %w", devicesSpec, err)
	}
	c := cron.New(
		cron.WithParser(parser),
		cron.WithLogger(cronLogger{s.log}),
		// Recover must be inside SkipIfStillRunning: cron v3.0.1's skip guard
		// does not release its token when the job panics, so with Recover
		// outside, one panicking walk would skip every later turn for good.
		cron.WithChain(cron.SkipIfStillRunning(cronLogger{s.log}), cron.Recover(cronLogger{s.log})),
	)
	devID := c.Schedule(devSched, cron.FuncJob(func() { _ = s.WalkDevices(ctx) }))
	jobs := []cron.EntryID{devID}
	if len(s.options().Operators) > 0 {
		rentSched, err := parser.Parse(rentalsSpec)
		if err != nil {
			return fmt.Errorf("schedule.rentals %q: %w", rentalsSpec, err)
		}
		jobs = append(jobs, c.Schedule(rentSched, cron.FuncJob(func() { _ = s.WalkRentals(ctx) })))
	}
	c.Start()
	// The wrapped jobs carry the chain, so these first walks share the
	// skip-if-running guard with the scheduled ones.
	var first sync.WaitGroup
	for _, id := range jobs {
		first.Go(c.Entry(id).WrappedJob.Run)
	}
	<-ctx.Done()
	<-c.Stop().Done()
	first.Wait()
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
