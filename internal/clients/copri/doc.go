// Package copri is a client for the COPRI / sharee.bike JSON API: it logs in,
// lists the account's open rentals (user_bikes_occupied) and, for service
// accounts, the operator's whole fleet (bikes_all).
//
// COPRI delivers every scalar as a string and uses PHP-style empty values, so
// decoding is deliberately tolerant of representation (numbers as JSON
// numbers, null, missing fields, [] for an empty object) and strict about
// content (a price that is not a number is an error naming the field).
//
// Secrets: the password and the session authcookie travel only in POST form
// bodies, never in a URL, a log line or an error string. The smart-lock key
// material that rentals carry (K_u, K_seed, K_a) is never decoded: the wire
// structs have no field for it, and response bodies are zeroed after use.
//
// The client knows nothing of metrics; callers observe it through the
// Instrumenter option.
package copri
