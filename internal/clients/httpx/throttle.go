package httpx

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Throttle is the client-wide pause after the vendor throttled: every
// request of the client waits it out before its next attempt, so the client
// as a whole slows down instead of each worker retrying on its own. A 429
// without Retry-After doubles the pause (minWait up to maxWait, jittered);
// one with Retry-After sets it to that, up to the client's cap; a success
// lets the next 429 start small again. Safe for concurrent use.
type Throttle struct {
	minWait, maxWait time.Duration
	inst             Instrumenter
	now              func() time.Time

	mu       sync.Mutex
	until    time.Time
	level    int
	reported time.Duration // what the gauge shows
}

// BackoffError is a request refused without being sent: the client is
// backing off (after throttling, or after a failed credential fetch) for
// longer than the request's deadline allows (Err is then
// context.DeadlineExceeded), or, for a credential fetch, after a failure
// (Err is that failure).
type BackoffError struct {
	What      string // "request", "token fetch", "login"
	Remaining time.Duration
	Err       error
}

func (e *BackoffError) Error() string {
	r := e.Remaining.Round(time.Millisecond)
	if e.Err == context.DeadlineExceeded {
		return fmt.Sprintf("%s not sent: the client backs off after throttling for another %s, past the deadline", e.What, r)
	}
	return fmt.Sprintf("%v (%s not retried for another %s)", e.Err, e.What, r)
}

func (e *BackoffError) Unwrap() error { return e.Err }

func newThrottle(minWait, maxWait time.Duration, inst Instrumenter) *Throttle {
	return &Throttle{minWait: max(minWait, time.Millisecond), maxWait: max(maxWait, minWait, time.Millisecond),
		inst: inst, now: time.Now}
}

// Remaining is how long the pause still lasts.
func (t *Throttle) Remaining() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return max(t.until.Sub(t.now()), 0)
}

// Wait blocks until the pause is over, including any pause set while it
// slept. Waiters wake spread over a quarter of the pause rather than all at
// once. When ctx's deadline comes first it fails at once with a
// *BackoffError rather than sleeping into a timeout.
func (t *Throttle) Wait(ctx context.Context) error {
	for {
		d := t.Remaining()
		if d <= 0 {
			return nil
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
			// Unwraps to DeadlineExceeded: the request would have timed out.
			return &BackoffError{What: "request", Remaining: d, Err: context.DeadlineExceeded}
		}
		if err := Sleep(ctx, d+rand.N(d/4+1)); err != nil {
			return err
		}
	}
}

// Throttled records a 429 (or a 503 with Retry-After). ra is its parsed
// Retry-After, if any, already capped by the caller.
func (t *Throttle) Throttled(ra time.Duration, hasRA bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var d time.Duration
	switch {
	case hasRA:
		d = ra
		if now.Add(d).Before(t.until) {
			return
		}
	case now.Before(t.until):
		return // already paused: one step per pause, not one per worker
	default:
		d = Jittered(t.minWait, t.maxWait, t.level)
		t.level++
	}
	t.until = now.Add(d)
	t.report(d)
}

// Succeeded resets the doubling after a non-throttled answer, and the
// gauge once the pause is over: a success that came in during the pause
// (a request sent before it) leaves the gauge to the next one, but not
// for ever.
func (t *Throttle) Succeeded() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.level = 0
	if t.reported != 0 && !t.now().Before(t.until) {
		t.report(0)
	}
}

func (t *Throttle) report(d time.Duration) {
	t.reported = d
	t.inst.ObserveBackoff(d)
}

// Sleep waits d or until ctx is done.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// jitterUp spreads d over [d, 1.5d).
func jitterUp(d time.Duration) time.Duration {
	if d < 2 {
		return d
	}
	return d + rand.N(d/2)
}
