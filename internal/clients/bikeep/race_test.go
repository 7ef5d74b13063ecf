//go:build race

package bikeep_test

// raceEnabled: under the race detector sync.Pool drops items on purpose and
// allocation counts mean nothing.
const raceEnabled = true
