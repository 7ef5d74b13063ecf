// Package sim simulates the two vendor backends fleetd talks to — the Bikeep
// Parking Device and Location APIs (with their OAuth2 token endpoint) and the
// COPRI/sharee.bike /APIjsonserver — with a seeded, deterministic fleet and
// fault injection. It serves `fleetd demo` and `fleetd sim`, the in-process
// end-to-end tests and the benchmarks (2,000 locations × 50 devices), so it
// is built to be cheap: each location's device list is serialized once and
// served from a cache until a device there changes, and fault evolution costs
// O(changes) per Step.
//
// The simulator is an independent implementation of the vendors, written
// from the reference texts in docs/vendor/: it encodes its responses with its
// own wire structs and spells every enum value and command name itself
// (words.go), never importing a client package, so that a JSON tag typo or a
// misspelt constant in a client cannot be hidden by the simulator sharing
// it. Its words are checked against the vocabulary extracted from the
// reference (testdata/vocabulary.txt); the cross-checks through the real
// clients and classifier are in internal/simcheck.
package sim
