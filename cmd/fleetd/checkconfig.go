package main

import (
	"fmt"
	"io"

	"github.com/alecthomas/kingpin/v2"
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
	cfg, ok := loadConfig(c.stderr, c.configFile)
	if !ok {
		return 2
	}
	fmt.Fprintf(c.stdout, "# %s: valid\n%s", c.configFile, cfg.String())
	return 0
}
