package httpx

import (
	"context"
	"sync"
	"time"
)

// Gate guards a credential fetch (an OAuth2 token, a COPRI login): at most
// one runs at a time and every caller shares its result; after a failure the
// gate stays shut for a backoff that doubles from base up to max (jittered
// upwards, so never below base), and callers fail fast with the last error
// instead of each asking the endpoint again. Safe for concurrent use.
type Gate struct {
	what      string
	base, max time.Duration
	now       func() time.Time
	sem       chan struct{}

	mu       sync.Mutex
	failures int
	retryAt  time.Time
	lastErr  error
}

// Gate backoff defaults: a failing credential endpoint is asked at most
// once a second, then ever more rarely, and at least every five minutes.
const (
	GateBase = time.Second
	GateMax  = 5 * time.Minute
)

// NewGate returns a gate for what ("token fetch", "login"); now may be nil
// for the wall clock.
func NewGate(what string, base, max time.Duration, now func() time.Time) *Gate {
	if now == nil {
		now = time.Now
	}
	return &Gate{what: what, base: base, max: max, now: now, sem: make(chan struct{}, 1)}
}

// Enter waits for the gate (or ctx) and returns the function that leaves
// it. Inside, the caller first checks whether another caller's fetch made
// its own unnecessary, then Shut, then fetches and reports with Done.
func (g *Gate) Enter(ctx context.Context) (leave func(), err error) {
	select {
	case g.sem <- struct{}{}:
		return func() { <-g.sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Shut returns a *BackoffError carrying the last failure while the backoff
// after it lasts, else nil.
func (g *Gate) Shut() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lastErr == nil {
		return nil
	}
	if d := g.retryAt.Sub(g.now()); d > 0 {
		return &BackoffError{What: g.what, Remaining: d, Err: g.lastErr}
	}
	return nil
}

// Done records the outcome of a fetch. A failure caused by the caller's own
// context ending is not the endpoint's fault and starts no backoff.
func (g *Gate) Done(ctx context.Context, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err == nil {
		g.failures, g.lastErr, g.retryAt = 0, nil, time.Time{}
		return
	}
	if ctx.Err() != nil {
		return
	}
	d := g.base
	for i := 0; i < g.failures && d < g.max; i++ {
		d *= 2
	}
	g.failures++
	g.lastErr = err
	g.retryAt = g.now().Add(min(jitterUp(min(d, g.max)), g.max+g.max/2))
}
