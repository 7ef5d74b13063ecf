// Command fleetd watches a fleet of Bikeep parking devices and COPRI rentals,
// exports their health as Prometheus metrics and re-syncs devices whose faults
// a sync-device command can cure.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"
)

// command is one subcommand: its constructor registers its flags on the
// kingpin app, and run executes it once kingpin has parsed the arguments,
// returning the exit status.
type command interface {
	run() int
}

func main() {
	// Built without make's -ldflags (go run, go build, go install): take the
	// version the Go toolchain recorded, once, before anything reads it, so
	// --version, fleetd_build_info and the status page never show an empty
	// one. This is what the linker would have set; nothing changes it later.
	info, _ := debug.ReadBuildInfo()
	version.Version, version.Revision = buildVersion(version.Version, version.Revision, info)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// buildVersion returns the version and revision fleetd reports. Values
// stamped in by make win; otherwise the module version (go install
// …@v1.2.3, or the pseudo-version Go derives from the VCS), else the VCS
// revision, with "-dirty" for a tree with uncommitted changes; "devel"
// when the toolchain recorded neither.
func buildVersion(stampedVersion, stampedRevision string, info *debug.BuildInfo) (ver, rev string) {
	vcsRev, dirty := "", false
	if info != nil {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				vcsRev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	rev = stampedRevision
	if rev == "" {
		rev = vcsRev
		if dirty && rev != "" {
			rev += "-dirty"
		}
	}
	if rev == "" {
		rev = "unknown"
	}
	switch {
	case stampedVersion != "":
		return stampedVersion, rev
	case info != nil && info.Main.Version != "" && info.Main.Version != "(devel)":
		return info.Main.Version, rev
	case vcsRev != "":
		short := vcsRev[:min(len(vcsRev), 12)]
		if dirty {
			short += "-dirty"
		}
		return short, rev
	}
	return "devel", rev
}

// run parses args and runs the selected subcommand, returning the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	app, commands := newApp(stdout, stderr)
	// kingpin calls terminate after --help and --version, then carries on
	// parsing; remember the call so the command is not run as well.
	terminated, exitCode := false, 0
	app.Terminate(func(code int) { terminated, exitCode = true, code })
	selected, err := app.Parse(args)
	if terminated {
		return exitCode
	}
	if err != nil {
		fmt.Fprintf(stderr, "fleetd: %v\n", err)
		return 2
	}
	cmd, ok := commands[selected]
	if !ok {
		fmt.Fprintf(stderr, "fleetd: no command %q\n", selected)
		return 2
	}
	return cmd.run()
}

// newApp builds the kingpin application and its subcommands.
func newApp(stdout, stderr io.Writer) (*kingpin.Application, map[string]command) {
	app := kingpin.New("fleetd", "Watches Bikeep parking devices and COPRI rentals, exports their health to Prometheus, and re-syncs devices a sync-device can cure.")
	app.Version(version.Print("fleetd"))
	app.HelpFlag.Short('h')
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)

	logs := addLogFlags(app)
	commands := map[string]command{
		"run":          newRunCmd(app, logs, stdout, stderr),
		"demo":         newDemoCmd(app, logs, stdout, stderr),
		"once":         newOnceCmd(app, logs, stdout, stderr),
		"check-config": newCheckConfigCmd(app, stdout, stderr),
		"sim":          newSimCmd(app, stdout, stderr),
	}
	return app, commands
}
