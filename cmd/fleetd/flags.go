package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/lmittmann/tint"
	toolkit "github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/fleetd/fleetd/internal/config"
)

// defaultListenAddress is fleetd's metrics port.
const defaultListenAddress = ":9870"

// logFlags are the Prometheus-style --log.* flags shared by every subcommand.
type logFlags struct {
	level  string
	format string
}

func addLogFlags(app *kingpin.Application) *logFlags {
	f := &logFlags{}
	app.Flag("log.level", "Only log messages with the given severity or above. One of: [debug, info, warn, error]").
		Default("info").EnumVar(&f.level, "debug", "info", "warn", "error")
	app.Flag("log.format", "Output format of log messages. One of: [text, json] (text is colourised on a terminal)").
		Default("text").EnumVar(&f.format, "text", "json")
	return f
}

// logger builds the slog logger the flags ask for, writing to w.
func (f *logFlags) logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(strings.ToUpper(f.level)))
	if f.format == "json" {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl}))
	}
	return slog.New(tint.NewTextHandler(w, &tint.Options{Level: lvl, TimeFormat: time.DateTime, NoColor: !isTerminal(w)}))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// webFlags are the --web.* flags of the commands that serve HTTP.
type webFlags struct {
	toolkit       *toolkit.FlagConfig
	telemetryPath string
	adminAPI      bool
}

func addWebFlags(cmd *kingpin.CmdClause, defaultAddr string) *webFlags {
	f := &webFlags{toolkit: kingpinflag.AddFlags(cmd, defaultAddr)}
	cmd.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").StringVar(&f.telemetryPath)
	cmd.Flag("web.enable-admin-api", "Enable the admin endpoints (pause/resume remediation, reload). Protect them with --web.config.file.").
		Default("false").BoolVar(&f.adminAPI)
	return f
}

// exitError prints err the way every subcommand does and returns status 2
// (configuration or connection error).
func exitError(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "fleetd: %v\n", err)
	return 2
}

// startHint is what a first run without a config file needs to know.
const startHint = `To see fleetd at work without a fleet:   fleetd demo
To watch the simulator (fleetd sim):     fleetd run --config examples/sim.yml
To watch your fleet:                     fleetd run --config fleetd.yml
  (a commented example: internal/config/example.yml; every key: docs/configuration.md)
`

// loadConfig loads the file behind --config. A file that is not there at
// all (a bare "fleetd" in an empty directory) gets the ways to start, not
// only "no such file"; every other problem is the config's own error.
func loadConfig(stderr io.Writer, path string) (*config.Config, bool) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(stderr, "fleetd: no config file %s\n%s", path, startHint)
		return nil, false
	}
	cfg, err := config.Load(path)
	if err != nil {
		exitError(stderr, err)
		return nil, false
	}
	return cfg, true
}
