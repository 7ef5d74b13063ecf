// Package httpxtest has test doubles for the clients' shared plumbing: a
// settable clock and the backoff and truncation half of an Instrumenter.
package httpxtest

import (
	"sync"
	"time"
)

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Pauses records ObserveBackoff and ObserveTruncated; embed it in a test
// Instrumenter.
type Pauses struct {
	mu        sync.Mutex
	backoffs  []time.Duration
	truncated map[string]int
}

// ObserveBackoff records d.
func (p *Pauses) ObserveBackoff(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.backoffs = append(p.backoffs, d)
}

// ObserveTruncated counts field.
func (p *Pauses) ObserveTruncated(field string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.truncated == nil {
		p.truncated = map[string]int{}
	}
	p.truncated[field]++
}

// Backoffs returns the pauses reported so far.
func (p *Pauses) Backoffs() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Duration(nil), p.backoffs...)
}

// Truncated returns how often field was reported shortened.
func (p *Pauses) Truncated(field string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.truncated[field]
}
