package httpx

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxRetryAfter is the longest Retry-After a request waits out before its
// retry. A server asking for more gets its answer reported instead (the
// next walk tries again), and the client-wide backoff is set to the
// client's cap.
const MaxRetryAfter = time.Minute

// maxRetryAfterHeader bounds a parsed Retry-After before it can overflow a
// Duration.
const maxRetryAfterHeader = 24 * time.Hour

// ParseRetryAfter reads a Retry-After value: delay seconds or an HTTP date,
// clamped to [0, 24h]. A date in the past yields (0, true).
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		return time.Duration(min(n, int64(maxRetryAfterHeader/time.Second))) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), maxRetryAfterHeader), true
}

// RetryAfter returns the Retry-After of a 429 or 503 answer.
func RetryAfter(resp *http.Response, now time.Time) (time.Duration, bool) {
	if resp == nil || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		return 0, false
	}
	return ParseRetryAfter(resp.Header.Get("Retry-After"), now)
}

// Backoff is the wait before retry number attempt+1: a Retry-After on a 429
// or 503 is honoured up to maxWait; otherwise the wait doubles from minWait
// per attempt, capped at maxWait, with "equal jitter" (a random point in the
// upper half) so that many workers do not retry in lockstep.
func Backoff(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
	if ra, ok := RetryAfter(resp, time.Now()); ok {
		return min(ra, maxWait)
	}
	return Jittered(minWait, maxWait, attempt)
}

// Jittered is minWait doubled attempt times, capped at maxWait, with equal
// jitter.
func Jittered(minWait, maxWait time.Duration, attempt int) time.Duration {
	d := minWait
	for i := 0; i < attempt && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}
