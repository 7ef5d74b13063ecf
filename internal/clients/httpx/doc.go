// Package httpx is the HTTP plumbing the vendor clients share: an
// instrumented transport keyed by route template, one retry loop (that of
// go-retryablehttp, given httpx's policy) with a client-wide retry budget
// and a shared backoff after throttling, one Retry-After parser with one
// clamp, capped body reads, sanitised error snippets, a single-flight gate
// with failure backoff for credential fetches, and the option validation
// both clients apply.
//
// A vendor that throttles or fails must see fleetd slow down as a whole,
// not every worker retrying on its own: retries are bounded as a share of
// the requests sent (the gRPC/Finagle retry-budget idea), and a 429 without
// Retry-After pauses every request of the client for a growing while.
package httpx
