// Package bikeep is a client for the Bikeep Parking Device and Location APIs:
// listing locations and their devices, reading a device, and sending and
// polling device commands, authenticated with OAuth2 client credentials or a
// static bearer token.
//
// The client knows nothing of metrics; callers observe it through the
// Instrumenter option.
package bikeep
