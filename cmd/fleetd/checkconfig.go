package main

import (
	"fmt"
	"io"

	"github.com/alecthomas/kingpin/v2"

	"github.com/fleetd/fleetd/internal/config"
)

// checkConfigCmd is `fleetd check-config`: validate and print the effective
// configuration with secrets masked.
type checkConfigCmd struct {
	configFile string
	stdout     io.Writer
	stderr     io.Writer
}

func newCheckConfigCmd(app *kingpin.Application, stdout, stderr io.Writer) *checkConfigCmd {
	c := &checkConfigCmd{stdout: stdout, stderr: stderr}
	cmd := app.Command("check-config", "Validate the configuration and print it with defaults applied and secrets masked.")
	cmd.Flag("config", "Configuration file.").Short('c').Default("fleetd.yml").StringVar(&c.configFile)
	return c
}

func (c *checkConfigCmd) run() int {
	cfg, err := config.Load(c.configFile)
	if err != nil {
		return exitError(c.stderr, err)
	}
	fmt.Fprintf(c.stdout, "# %s: valid\n%s", c.configFile, cfg.String())
	return 0
}
