// Package simcheck holds the cross-checks between the simulator
// (internal/sim) and the code that reads the vendors: the real Bikeep and
// COPRI clients and the health classifier. The simulator is an independent
// implementation of the vendors' APIs written from the reference texts, so
// the two can only be compared here, where both may be imported; the
// simulator itself never imports a client.
//
// The package has no code of its own: everything is in its tests.
package simcheck
