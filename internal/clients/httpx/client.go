package httpx

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"
)

// Policy says which failures of a request may be retried.
type Policy int

const (
	// RetryIdempotent retries transport errors, 429 and 5xx (but 501).
	RetryIdempotent Policy = iota
	// RetryUnsent retries only a request that provably never left: no
	// connection was obtained and the error is a dial or DNS failure. For
	// requests that must not run twice (a device command).
	RetryUnsent
)

// Request is one API request.
type Request struct {
	Method string
	Route  string // template, for instrumentation and logs
	URL    string
	Header http.Header
	Body   []byte // nil: none
	Policy Policy
}

// Client sends requests with retries within the budget, honouring the
// client-wide throttle. It never follows a redirect: an API that redirects
// is misconfigured, and a redirect to another origin would carry the
// credentials there. Safe for concurrent use.
type Client struct {
	name     string
	hc       *http.Client
	inst     Instrumenter
	log      *slog.Logger
	maxBody  int64
	attempts int
	minWait  time.Duration
	maxWait  time.Duration
	raCap    time.Duration
	budget   *Budget
	throttle *Throttle
}

// RetryAfterUpToMaxWait, as New's raCap, honours Retry-After up to the
// client's retry maximum (Settings.MaxWait).
const RetryAfterUpToMaxWait time.Duration = 0

// New returns a client named name ("bikeep", "copri": the prefix of its log
// messages). raCap is the longest Retry-After a retry waits (at most
// MaxRetryAfter) and the cap of the client-wide pause it sets;
// RetryAfterUpToMaxWait makes it the retry maximum.
func New(name string, s Settings, raCap time.Duration) *Client {
	s = s.withDefaults()
	if raCap <= RetryAfterUpToMaxWait {
		raCap = s.MaxWait
	}
	hc := *s.HTTPClient
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc.Transport = &instrumentedTransport{base: base, inst: s.Instrumenter}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	raCap = min(raCap, MaxRetryAfter)
	return &Client{
		name:     name,
		hc:       &hc,
		inst:     s.Instrumenter,
		log:      s.Logger,
		maxBody:  s.MaxBodyBytes,
		attempts: s.MaxAttempts,
		minWait:  s.MinWait,
		maxWait:  s.MaxWait,
		raCap:    raCap,
		budget:   NewBudget(BudgetRatio, BudgetFloor, BudgetWindow, nil),
		throttle: newThrottle(s.MinWait, s.MaxWait, s.Instrumenter),
	}
}

// MaxBodyBytes is the body cap of the client.
func (c *Client) MaxBodyBytes() int64 { return c.maxBody }

// Instrumenter is the client's observer.
func (c *Client) Instrumenter() Instrumenter { return c.inst }

// Do sends r and returns the final response, which the caller must close.
// sent reports whether the request may have reached the server (always
// true once a response arrived). Errors carry no URL.
func (c *Client) Do(ctx context.Context, r Request) (resp *http.Response, sent bool, err error) {
	ctx = WithRoute(ctx, r.Route)
	var gotConn atomic.Bool
	if r.Policy == RetryUnsent {
		// Once a connection is in hand the request may be written; before
		// that (dial or DNS failure) it provably was not.
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			GotConn: func(httptrace.GotConnInfo) { gotConn.Store(true) },
		})
	}
	c.budget.Request()
	for attempt := 0; ; attempt++ {
		if err := c.throttle.Wait(ctx); err != nil {
			return nil, sent, err
		}
		req, err := http.NewRequestWithContext(ctx, r.Method, r.URL, bodyReader(r.Body))
		if err != nil {
			return nil, sent, StripURL(err)
		}
		for k, v := range r.Header {
			req.Header[k] = v
		}
		resp, err := c.hc.Do(req)
		var wait time.Duration
		retry := false
		if err != nil {
			err = StripURL(err)
			maybeSent := r.Policy != RetryUnsent || gotConn.Load() || !IsDialError(err)
			sent = sent || maybeSent
			retry = ctx.Err() == nil && retryableError(err) && (r.Policy == RetryIdempotent || !maybeSent)
			wait = Jittered(c.minWait, c.maxWait, attempt)
		} else {
			sent = true
			retry, wait = c.judge(r, resp, attempt)
		}
		if !retry || attempt+1 >= c.attempts {
			return resp, sent, err
		}
		if !c.budget.Retry() {
			c.log.DebugContext(ctx, c.name+": retry budget spent, not retrying", "route", r.Route, "method", r.Method)
			return resp, sent, err
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, ErrorBodyLimit))
			resp.Body.Close()
		}
		c.inst.ObserveRetry(r.Route, r.Method)
		c.log.DebugContext(ctx, c.name+": retrying request", "route", r.Route, "method", r.Method,
			"attempt", attempt+2, "wait", wait)
		if err := Sleep(ctx, wait); err != nil {
			return nil, sent, err
		}
	}
}

// judge decides whether an answer is retried and after how long, and feeds
// the throttle: a 429 (or a 503 with Retry-After) to an idempotent request
// pauses the client; a 429 to a command is the device's own throttle and
// concerns no other request.
func (c *Client) judge(r Request, resp *http.Response, attempt int) (bool, time.Duration) {
	code := resp.StatusCode
	ra, hasRA := RetryAfter(resp, time.Now())
	if r.Policy == RetryUnsent {
		return false, 0
	}
	if code < 500 && code != http.StatusTooManyRequests {
		c.throttle.Succeeded()
		return false, 0
	}
	if code == http.StatusTooManyRequests || hasRA {
		c.throttle.Throttled(min(ra, c.raCap), hasRA)
		c.log.Debug(c.name+": throttled", "route", r.Route, "status", code, "retry_after", ra,
			"backoff", c.throttle.Remaining())
	}
	switch {
	case hasRA && ra > MaxRetryAfter:
		return false, 0 // the vendor asks for a long pause: report, do not wait
	case hasRA, code == http.StatusTooManyRequests:
		return true, 0 // the throttle holds the retry back
	case code == http.StatusNotImplemented:
		return false, 0
	}
	return true, Jittered(c.minWait, c.maxWait, attempt)
}

// retryableError leaves out failures a retry cannot cure.
func retryableError(err error) bool {
	var cv *tls.CertificateVerificationError
	var be *BackoffError
	return !errors.As(err, &cv) && !errors.As(err, &be)
}

func bodyReader(b []byte) io.Reader {
	if b == nil {
		return nil
	}
	return bytes.NewReader(b)
}

// RefuseRedirect is a CheckRedirect for requests that must follow none (a
// token request carries the client secret): the error names only the host
// the redirect pointed to.
func RefuseRedirect(req *http.Request, _ []*http.Request) error {
	return &RedirectError{Host: req.URL.Host}
}

// RedirectError is a redirect that was refused.
type RedirectError struct{ Host string }

func (e *RedirectError) Error() string {
	return fmt.Sprintf("redirect refused (it pointed to host %s)", Sanitize(e.Host, 256))
}
