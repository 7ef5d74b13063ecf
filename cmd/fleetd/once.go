package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/remediate/policy"
	"github.com/fleetd/fleetd/internal/scrape"
)

// onceCmd is `fleetd once`: one walk, a table for a human at a terminal, and
// an exit status for scripts: 0 nothing page-worthy, 1 something is, 2 the
// config is bad or a source could not be walked.
type onceCmd struct {
	configFile string
	logs       *logFlags
	stdout     io.Writer
	stderr     io.Writer
	now        func() time.Time
}

func newOnceCmd(app *kingpin.Application, logs *logFlags, stdout, stderr io.Writer) *onceCmd {
	c := &onceCmd{logs: logs, stdout: stdout, stderr: stderr, now: time.Now}
	cmd := app.Command("once", "Walk the fleet once and print faulty devices and rentals. Exit status: 0 nothing page-worthy, 1 page-worthy faults, 2 config or connection error. Faults that need several walks to confirm (lock mismatches) are not shown.")
	cmd.Flag("config", "Configuration file.").Short('c').Default("fleetd.yml").StringVar(&c.configFile)
	return c
}

func (c *onceCmd) run() int {
	cfg, ok := loadConfig(c.stderr, c.configFile)
	if !ok {
		return 2
	}
	log := c.logs.logger(c.stderr)
	sc, err := newScraper(cfg, log, scraperDeps{})
	if err != nil {
		return exitError(c.stderr, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	walkErr := errors.Join(sc.WalkDevices(ctx), sc.WalkRentals(ctx))
	snap := sc.Snapshot()
	pages := report(c.stdout, snap, policy.Compile(cfg.Remediation), c.now())
	switch {
	case walkErr != nil:
		fmt.Fprintf(c.stderr, "fleetd: walk failed: %v\n", walkErr)
		return 2
	case pages > 0:
		return 1
	}
	return 0
}

// pageReason says why a fault needs a human now, or "" when it does not:
// dead devices, and recoverable faults that remediation cannot or may not
// touch — as the remediation gate table says, not by a copy of its checks.
func pageReason(snap *scrape.Snapshot, f health.Fault, rules *policy.Rules, now time.Time) string {
	switch {
	case f.Kind == health.Dead:
		return "dead"
	case !f.Recoverable:
		return ""
	}
	d, _ := snap.Device(f.LocationID, f.DeviceID)
	x := policy.Explain(rules, &f, d, now)
	switch {
	case x.Refuses(policy.ReasonNotActive):
		return ""
	case x.Refuses(policy.ReasonUnsupported):
		return "sync-device unavailable"
	case x.Refuses(policy.ReasonExcluded):
		return "excluded from remediation"
	}
	return ""
}

// report prints the walk's result and returns the number of page-worthy findings.
func report(w io.Writer, snap *scrape.Snapshot, rules *policy.Rules, now time.Time) int {
	pages := 0
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()

	fmt.Fprintln(tw, "SOURCE\tUP\tDURATION\tERROR")
	for _, s := range snap.Sources {
		if !s.Walked {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, yesNo(s.Up), s.LastDuration.Round(time.Millisecond), s.LastError)
	}

	down := 0
	for _, l := range snap.Locations {
		if !l.Up {
			down++
		}
	}
	fmt.Fprintf(tw, "\nLOCATIONS: %d walked, %d down, %d devices\n", len(snap.Locations), down, snap.DeviceCount())
	if down > 0 {
		fmt.Fprintln(tw, "LOCATION\tNAME\tERROR\tPAGE")
		for _, l := range snap.Locations {
			if !l.Up {
				pages++
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", l.ID, l.Name, l.LastError, "location down")
			}
		}
	}

	fmt.Fprintf(tw, "\nDEVICE FAULTS: %d\n", len(snap.Faults))
	if len(snap.Faults) > 0 {
		fmt.Fprintln(tw, "LOCATION\tDEVICE\tALIAS\tTYPE\tFAULT\tFOR\tRECOVERABLE\tPAGE\tDETAIL")
		for _, f := range snap.Faults {
			why := pageReason(snap, f, rules, now)
			if why != "" {
				pages++
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.LocationID, f.DeviceID, f.Alias, f.DeviceType,
				f.Kind, age(now, f.Since), yesNo(f.Recoverable), why, f.Detail)
		}
	}

	fmt.Fprintf(tw, "\nRENTAL FAULTS: %d\n", len(snap.RentalFaults))
	if len(snap.RentalFaults) > 0 {
		fmt.Fprintln(tw, "OPERATOR\tBOOKING\tBIKE\tSTATION\tFAULT\tFOR\tDETAIL")
		for _, f := range snap.RentalFaults {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Operator, f.BookingID, f.Bike, f.Station, f.Kind, age(now, f.Since), f.Detail)
		}
	}
	fmt.Fprintf(tw, "\nPAGE-WORTHY: %d\n", pages)
	return pages
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func age(now, since time.Time) string {
	if since.IsZero() {
		return "-"
	}
	return now.Sub(since).Round(time.Second).String()
}
