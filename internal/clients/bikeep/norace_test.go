//go:build !race

package bikeep_test

const raceEnabled = false
