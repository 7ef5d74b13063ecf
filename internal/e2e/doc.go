// Package e2e holds tests that run fleetd's real components together — the
// Bikeep client, the scraper with its fault tracker, and the remediation
// engine with a bbolt ledger — against a vendor API served by httptest, to
// prove promises no single package can: above all that no glitch of the
// vendor's data lets a device receive more than max_attempts commands in one
// fault episode.
package e2e
