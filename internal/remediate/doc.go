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
// Gates, in order (first refusal wins; each counted in
// fleetd_remediation_skipped_total{reason}): disabled / trigger / paused,
// blackout, excluded, not_active / not_recoverable / unsupported, too_young,
// storm, in_flight, cooldown, exhausted, max_in_flight, stopped, throttled
// (backing off after the vendor throttled a POST, which is no attempt),
// rate_limited, and finally dry_run, which logs what would be sent and
// touches neither the ledger nor the rate limiter.
//
// An episode is a (device, fault); it ends only on evidence — the device
// listed without the fault, or missing from complete lists for
// remediation.forget_after — so no glitch, restart or reload resets its
// attempts.
package remediate
