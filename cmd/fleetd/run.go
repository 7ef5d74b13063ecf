package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"

	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/memlimit"
)

// runCmd is `fleetd run`: the daemon.
type runCmd struct {
	configFile string
	web        *webFlags
	logs       *logFlags
	stdout     io.Writer
	stderr     io.Writer
	// ctx, when set, replaces the signal context (tests).
	ctx context.Context
}

func newRunCmd(app *kingpin.Application, logs *logFlags, stdout, stderr io.Writer) *runCmd {
	c := &runCmd{logs: logs, stdout: stdout, stderr: stderr}
	cmd := app.Command("run", "Run the daemon (default).").Default()
	cmd.Flag("config", "Configuration file.").Short('c').Default("fleetd.yml").StringVar(&c.configFile)
	c.web = addWebFlags(cmd, defaultListenAddress)
	return c
}

func (c *runCmd) run() int {
	// SIGHUP is caught from the start: a reload sent while fleetd is still
	// starting must not kill it (the default action); it is applied once
	// running.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	log := c.logs.logger(c.stderr)
	// In a container, a soft memory limit below the cgroup's makes the
	// collector work harder near the limit instead of the kernel killing us.
	if _, err := memlimit.Apply(memlimit.Options{Logger: log}); err != nil {
		log.Warn("cannot read the cgroup memory limit; no soft memory limit set", "err", err)
	}
	cfg, ok := loadConfig(c.stderr, c.configFile)
	if !ok {
		return 2
	}
	d, err := newDaemon(cfg, func() (*config.Config, error) { return config.Load(c.configFile) }, c.web, log)
	if err != nil {
		return exitError(c.stderr, err)
	}
	ctx := c.ctx
	if ctx == nil {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	d.hup = hup
	if err := d.run(ctx, nil); err != nil {
		log.Error("fleetd stopped", "err", err)
		return 1
	}
	return 0
}
