// Package remediate is fleetd's remediation engine: it takes recoverable
// device faults (after every device walk, and from the Alertmanager webhook
// when enabled), passes each through the policy gates of DESIGN.md
// ("Remediation policy"), sends sync-device to the few that pass, polls the
// command to its end and verifies on a later walk whether the fault cleared.
//
// These are real locks in the street, so every choice leans to doing
// nothing: at most one command per device in flight, ever; a command POST
// is never retried; an ambiguous send blocks the device until its cooldown
// has passed; and every attempt is written (fsynced) to a durable ledger
// before its POST leaves, so a crash or restart can never cause a re-send.
//
// The gates and their order are the table of package policy
// (policy.Gates), which also generates docs/remediation-gates.md; the
// ledger is a store.Store whose Reserve re-checks the shared gates and
// records the attempt in one transaction.
//
// An episode is a (device, fault); it ends only on evidence — the device
// listed without the fault, or missing from complete lists for
// remediation.forget_after — so no glitch, restart or reload resets its
// attempts.
package remediate
