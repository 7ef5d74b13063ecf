// Package policy is fleetd's remediation policy as pure functions and
// values: the gate table every decision passes through, the storm state
// machine, and Decide and Explain over one fault. It does no I/O and has
// no clock of its own — every time it compares against arrives as an
// argument — so the engine, `fleetd once`, the status page, a Store that
// re-checks the shared gates atomically and the reference documentation
// all read the same rules, and a table test can pin each one down.
//
// The gate order lives in one place, Gates; SkipReasons, the pre-created
// series of fleetd_remediation_skipped_total and docs/remediation-gates.md
// are derived from it.
package policy
