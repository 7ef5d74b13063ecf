package httpx

import (
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

	"github.com/hashicorp/go-retryablehttp"
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

// Client sends requests through go-retryablehttp, which runs the attempts,
// rewinds the body and sleeps between them; httpx supplies its policy:
// CheckRetry classifies each outcome, feeds the client-wide throttle and
// spends the retry budget, Backoff spaces out retries of failures,
// PrepareRetry waits out the client-wide pause. It never follows a
// redirect: an API that redirects is misconfigured, and a redirect to
// another origin would carry the credentials there. Safe for concurrent use.
type Client struct {
	name     string
	rc       *retryablehttp.Client
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
	c := &Client{
		name:     name,
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
	c.rc = &retryablehttp.Client{
		HTTPClient:     &hc,
		RetryWaitMin:   s.MinWait,
		RetryWaitMax:   s.MaxWait,
		RetryMax:       s.MaxAttempts - 1,
		RequestLogHook: c.beforeAttempt,
		CheckRetry:     c.checkRetry,
		Backoff:        backoff,
		PrepareRetry:   c.prepareRetry,
		ErrorHandler:   giveUp,
		// No Logger: the library's lines carry the request URL (ids, a
		// server's path); ours name the route template.
	}
	return c
}

// MaxBodyBytes is the body cap of the client.
func (c *Client) MaxBodyBytes() int64 { return c.maxBody }

// Instrumenter is the client's observer.
func (c *Client) Instrumenter() Instrumenter { return c.inst }

// exchange is what the retry hooks know of one Do call. It travels in the
// request's context, the one thing every hook is handed; the hooks of one
// call run one after another, on Do's goroutine.
type exchange struct {
	req     Request
	gotConn atomic.Bool // set by the trace, on the transport's goroutine
	attempt int         // index of the attempt in flight
	sent    bool        // the request may have reached the server
	decided time.Time   // when the last retry was granted
}

type exchangeKey struct{}

func exchangeOf(ctx context.Context) *exchange {
	x, _ := ctx.Value(exchangeKey{}).(*exchange)
	return x
}

// Do sends r and returns the final response, which the caller must close.
// sent reports whether the request may have reached the server (always
// true once a response arrived). Errors carry no URL.
func (c *Client) Do(ctx context.Context, r Request) (resp *http.Response, sent bool, err error) {
	x := &exchange{req: r}
	ctx = context.WithValue(WithRoute(ctx, r.Route), exchangeKey{}, x)
	if r.Policy == RetryUnsent {
		// Once a connection is in hand the request may be written; before
		// that (dial or DNS failure) it provably was not.
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			GotConn: func(httptrace.GotConnInfo) { x.gotConn.Store(true) },
		})
	}
	c.budget.Request()
	if err := c.throttle.Wait(ctx); err != nil {
		return nil, false, err
	}
	var body any // untyped nil: with a nil []byte the library attaches an empty body to a GET
	if r.Body != nil {
		body = r.Body
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, r.Method, r.URL, body)
	if err != nil {
		return nil, false, StripURL(err)
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	resp, err = c.rc.Do(req)
	return resp, x.sent, StripURL(err)
}

// beforeAttempt learns which attempt is about to go out: CheckRetry is not
// told.
func (c *Client) beforeAttempt(_ retryablehttp.Logger, req *http.Request, attempt int) {
	if x := exchangeOf(req.Context()); x != nil {
		x.attempt = attempt
	}
}

// checkRetry decides after each attempt. A retry needs a retryable outcome
// for the request's policy, an attempt left and room in the client's
// budget; the library's own attempt limit is never what stops it, so no
// budget is spent on a retry that would not be made.
func (c *Client) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	x := exchangeOf(ctx)
	if x == nil {
		return false, nil
	}
	r := x.req
	retry := false
	if err != nil {
		err = StripURL(err)
		maybeSent := r.Policy != RetryUnsent || x.gotConn.Load() || !IsDialError(err)
		x.sent = x.sent || maybeSent
		retry = ctx.Err() == nil && retryableError(err) && (r.Policy == RetryIdempotent || !maybeSent)
	} else {
		x.sent = true
		retry = c.judge(r, resp)
	}
	if !retry || x.attempt+1 >= c.attempts {
		return false, nil
	}
	if !c.budget.Retry() {
		c.log.DebugContext(ctx, c.name+": retry budget spent, not retrying", "route", r.Route, "method", r.Method)
		return false, nil
	}
	if resp != nil {
		// Read what an error envelope holds so the connection can be
		// reused; the library's own drain stops at 4 KiB.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, ErrorBodyLimit))
	}
	c.inst.ObserveRetry(r.Route, r.Method)
	x.decided = time.Now()
	return true, nil
}

// prepareRetry runs after the backoff: the retry also waits out the
// client-wide pause, which may have been set or extended meanwhile by
// another request.
func (c *Client) prepareRetry(req *http.Request) error {
	ctx := req.Context()
	if err := c.throttle.Wait(ctx); err != nil {
		return err
	}
	if x := exchangeOf(ctx); x != nil {
		c.log.DebugContext(ctx, c.name+": retrying request", "route", x.req.Route, "method", x.req.Method,
			"attempt", x.attempt+2, "waited", time.Since(x.decided))
	}
	return nil
}

// backoff is the library's wait before retry number attempt+1. A throttled
// answer (429, or Retry-After) waits for nothing here: the client-wide
// pause it set holds the retry back in prepareRetry. Other failures wait
// Jittered.
func backoff(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
	if throttled(resp) {
		return 0
	}
	return Jittered(minWait, maxWait, attempt)
}

func throttled(resp *http.Response) bool {
	if resp == nil {
		return false
	}
	_, hasRA := RetryAfter(resp, time.Now())
	return hasRA || resp.StatusCode == http.StatusTooManyRequests
}

// giveUp hands back the last outcome as it was: the final response of a
// request out of attempts or budget (a 429, a 5xx) to be reported by the
// caller, or the error that ended it. The library would turn the former
// into an error and wrap both with the URL.
func giveUp(resp *http.Response, err error, _ int) (*http.Response, error) {
	if err != nil {
		if resp != nil {
			resp.Body.Close() // already drained by the library
		}
		return nil, err
	}
	return resp, nil
}

// judge decides whether an answer is retried, and feeds the throttle: a
// 429 (or a 503 with Retry-After) to an idempotent request pauses the
// client, for its Retry-After clamped to the client's cap; a 429 to a
// command is the device's own throttle and concerns no other request.
func (c *Client) judge(r Request, resp *http.Response) bool {
	code := resp.StatusCode
	ra, hasRA := RetryAfter(resp, time.Now())
	if r.Policy == RetryUnsent {
		return false
	}
	if code < 500 && code != http.StatusTooManyRequests {
		c.throttle.Succeeded()
		return false
	}
	if code == http.StatusTooManyRequests || hasRA {
		c.throttle.Throttled(min(ra, c.raCap), hasRA)
		c.log.Debug(c.name+": throttled", "route", r.Route, "status", code, "retry_after", ra,
			"backoff", c.throttle.Remaining())
	}
	switch {
	case hasRA && ra > MaxRetryAfter:
		return false // the vendor asks for a long pause: report, do not wait
	case code == http.StatusNotImplemented:
		return false
	}
	return true
}

// retryableError leaves out failures a retry cannot cure.
func retryableError(err error) bool {
	var cv *tls.CertificateVerificationError
	var be *BackoffError
	return !errors.As(err, &cv) && !errors.As(err, &be)
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
