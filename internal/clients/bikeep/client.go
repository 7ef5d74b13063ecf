package bikeep

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/fleetd/fleetd/internal/secret"
)

// Route templates, as reported to the Instrumenter and named in errors.
const (
	RouteLocations       = "/location/v1/locations"
	RouteLocationDevices = "/device/v1/locations/{id}/devices"
	RouteDevice          = "/device/v1/devices/{id}"
	RouteDeviceCommands  = "/device/v1/devices/{id}/commands"
	RouteCommand         = "/device/v1/commands/{id}"
)

// Defaults for the options.
const (
	DefaultMaxBodyBytes = 8 << 20
	DefaultMaxAttempts  = 4
	DefaultMinWait      = 250 * time.Millisecond
	DefaultMaxWait      = 10 * time.Second
	DefaultUserAgent    = "fleetd-bikeep-client"
)

// errBodyLimit bounds what is read of an error body: the envelope is small
// and a proxy's HTML page is only sampled.
const errBodyLimit = 64 << 10

// Instrumenter observes the client's traffic; fleetd backs it with
// Prometheus metrics. Implementations must be safe for concurrent use.
type Instrumenter interface {
	// ObserveRequest is called once per HTTP attempt. route is the template,
	// e.g. "/device/v1/locations/{id}/devices"; code is the HTTP status or 0
	// on transport error; d runs until the response headers arrived.
	ObserveRequest(route, method string, code int, d time.Duration)
	// ObserveRetry is called before each retry of a request.
	ObserveRetry(route, method string)
}

type nopInstrumenter struct{}

func (nopInstrumenter) ObserveRequest(string, string, int, time.Duration) {}
func (nopInstrumenter) ObserveRetry(string, string)                       {}

// Client talks to the Bikeep Parking Device and Location APIs. It is safe
// for concurrent use.
type Client struct {
	base      string // scheme://host[/prefix] without a trailing slash
	getRC     *retryablehttp.Client
	postRC    *retryablehttp.Client
	auth      tokenSource // nil: no Authorization header
	maxBody   int64
	inst      Instrumenter
	log       *slog.Logger
	userAgent string
	// lists decodes device-list bodies as they stream in (WalkLocationDevices).
	lists *ListDecoder
}

type config struct {
	hc        *http.Client
	mkAuth    []func(*config) tokenSource
	maxBody   int64
	attempts  int
	minWait   time.Duration
	maxWait   time.Duration
	inst      Instrumenter
	log       *slog.Logger
	userAgent string
	now       func() time.Time
}

// Option configures a Client.
type Option func(*config) error

// WithHTTPClient sets the base HTTP client (its transport and timeout). The
// client is copied, not modified. Token requests use it too.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) error {
		if hc == nil {
			return errors.New("nil http client")
		}
		c.hc = hc
		return nil
	}
}

// WithClientCredentials authenticates with the OAuth2 client-credentials
// grant (credentials as form fields). The token is cached and replaced
// shortly before it expires, or at once after a 401.
func WithClientCredentials(tokenURL, clientID string, clientSecret secret.String) Option {
	return func(c *config) error {
		u, err := url.Parse(tokenURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return errors.New("token URL must be an absolute http(s) URL")
		}
		if clientID == "" || clientSecret.IsZero() {
			return errors.New("client credentials need a client id and a client secret")
		}
		c.mkAuth = append(c.mkAuth, func(c *config) tokenSource {
			return &ccSource{
				cfg: &clientcredentials.Config{
					ClientID:     clientID,
					ClientSecret: clientSecret.Reveal(),
					TokenURL:     tokenURL,
					AuthStyle:    oauth2.AuthStyleInParams,
				},
				hc:  c.hc,
				now: c.now,
				log: func(ctx context.Context, msg string, args ...any) { c.log.DebugContext(ctx, msg, args...) },
			}
		})
		return nil
	}
}

// WithStaticToken authenticates with a fixed bearer token.
func WithStaticToken(tok secret.String) Option {
	return func(c *config) error {
		if tok.IsZero() {
			return errors.New("empty static token")
		}
		c.mkAuth = append(c.mkAuth, func(*config) tokenSource { return staticSource{tok} })
		return nil
	}
}

// WithTokenFile authenticates with a bearer token read from path. The file
// is re-read when its modification time or size changes, and after a 401.
func WithTokenFile(path string) Option {
	return func(c *config) error {
		if path == "" {
			return errors.New("empty token file path")
		}
		c.mkAuth = append(c.mkAuth, func(*config) tokenSource { return &fileSource{path: path} })
		return nil
	}
}

// WithMaxBodyBytes caps a response body (default 8 MiB). A larger body is
// a *BodyTooLargeError and is never read whole.
func WithMaxBodyBytes(n int64) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("max body bytes must be positive, got %d", n)
		}
		c.maxBody = n
		return nil
	}
}

// WithRetry sets the retry policy of GET requests: at most maxAttempts
// attempts, exponential backoff with jitter between minWait and maxWait,
// Retry-After honoured up to maxWait. Defaults: 4, 250ms, 10s.
func WithRetry(maxAttempts int, minWait, maxWait time.Duration) Option {
	return func(c *config) error {
		if maxAttempts < 1 {
			return fmt.Errorf("max attempts must be at least 1, got %d", maxAttempts)
		}
		if minWait < 0 || maxWait < minWait {
			return fmt.Errorf("retry waits: need 0 <= min (%s) <= max (%s)", minWait, maxWait)
		}
		c.attempts, c.minWait, c.maxWait = maxAttempts, minWait, maxWait
		return nil
	}
}

// WithInstrumenter reports every attempt and retry to in.
func WithInstrumenter(in Instrumenter) Option {
	return func(c *config) error {
		if in == nil {
			return errors.New("nil instrumenter")
		}
		c.inst = in
		return nil
	}
}

// WithLogger sets the logger for debug output (retries, token renewal).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("nil logger")
		}
		c.log = l
		return nil
	}
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option {
	return func(c *config) error {
		c.userAgent = ua
		return nil
	}
}

// withClock replaces the clock that decides token renewal (tests).
func withClock(now func() time.Time) Option {
	return func(c *config) error {
		c.now = now
		return nil
	}
}

// NewClient returns a client for the API at baseURL (e.g.
// https://services.bikeep.com; a path prefix is kept). At most one of
// WithClientCredentials, WithStaticToken and WithTokenFile may be given;
// with none, requests carry no Authorization header.
func NewClient(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("bikeep: base URL must be an absolute http(s) URL")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, errors.New("bikeep: base URL must not carry a query, fragment or user info")
	}
	cfg := config{
		hc:        &http.Client{},
		maxBody:   DefaultMaxBodyBytes,
		attempts:  DefaultMaxAttempts,
		minWait:   DefaultMinWait,
		maxWait:   DefaultMaxWait,
		inst:      nopInstrumenter{},
		log:       slog.New(slog.DiscardHandler),
		userAgent: DefaultUserAgent,
		now:       time.Now,
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("bikeep: %w", err)
		}
	}
	if len(cfg.mkAuth) > 1 {
		return nil, errors.New("bikeep: more than one authentication option given")
	}

	c := &Client{
		base:      strings.TrimRight(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"),
		maxBody:   cfg.maxBody,
		lists:     NewListDecoder(cfg.maxBody),
		inst:      cfg.inst,
		log:       cfg.log,
		userAgent: cfg.userAgent,
	}
	if len(cfg.mkAuth) == 1 {
		c.auth = cfg.mkAuth[0](&cfg)
	}

	// A copy of the caller's client: instrumented per attempt, and never
	// following redirects (an API that redirects is misconfigured, and a
	// redirected POST would be re-sent).
	hc := *cfg.hc
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc.Transport = &instrumentedTransport{base: base, inst: cfg.inst}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	newRC := func(check retryablehttp.CheckRetry, attempts int) *retryablehttp.Client {
		return &retryablehttp.Client{
			HTTPClient: &hc,
			// retryablehttp's own logging prints URLs; ours goes through the
			// hooks below with the route template instead.
			Logger:          nil,
			RetryWaitMin:    cfg.minWait,
			RetryWaitMax:    cfg.maxWait,
			RetryMax:        attempts - 1,
			CheckRetry:      check,
			Backoff:         backoff,
			ErrorHandler:    retryablehttp.PassthroughErrorHandler,
			RequestLogHook:  c.onAttempt,
			ResponseLogHook: c.onResponse,
		}
	}
	c.getRC = newRC(retryablehttp.DefaultRetryPolicy, cfg.attempts)
	c.postRC = newRC(retryUnsent, cfg.attempts)
	return c, nil
}

type routeKey struct{}
type sentKey struct{}

func routeOf(ctx context.Context) string {
	r, _ := ctx.Value(routeKey{}).(string)
	return r
}

// onAttempt counts and logs retries; attempt 0 is the first try.
func (c *Client) onAttempt(_ retryablehttp.Logger, req *http.Request, attempt int) {
	if attempt == 0 {
		return
	}
	route := routeOf(req.Context())
	c.inst.ObserveRetry(route, req.Method)
	c.log.DebugContext(req.Context(), "bikeep: retrying request",
		"route", route, "method", req.Method, "attempt", attempt+1)
}

func (c *Client) onResponse(_ retryablehttp.Logger, resp *http.Response) {
	if resp.StatusCode < 300 {
		return
	}
	ctx := resp.Request.Context()
	c.log.DebugContext(ctx, "bikeep: error response",
		"route", routeOf(ctx), "method", resp.Request.Method, "status", resp.StatusCode)
}

// instrumentedTransport reports every attempt, by route template.
type instrumentedTransport struct {
	base http.RoundTripper
	inst Instrumenter
}

func (t *instrumentedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	route := routeOf(req.Context())
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	if route != "" {
		code := 0
		if err == nil {
			code = resp.StatusCode
		}
		t.inst.ObserveRequest(route, req.Method, code, time.Since(start))
	}
	return resp, err
}

// CloseIdleConnections lets retryablehttp and http.Client reach the base transport.
func (t *instrumentedTransport) CloseIdleConnections() {
	if ci, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// call describes one API request.
type call struct {
	method string
	route  string
	path   string // escaped, relative to the base URL
	body   []byte
	// cmd is set for the command POST: once the request may have reached
	// the server, failures are ambiguous and nothing is retried.
	cmd      *CommandRequest
	deviceID string
}

// do performs cl and decodes a 2xx body into v (a *json.RawMessage receives
// the raw bytes). It is the single request path: authentication, retries,
// the 401 token refresh, body limits and error mapping all live here.
func (c *Client) do(ctx context.Context, cl call, v any) error {
	ctx = context.WithValue(ctx, routeKey{}, cl.route)
	var (
		used    string
		authErr *APIError // the first 401, returned if no fresh token is had
	)
	for try := 0; try < 2; try++ {
		if err := ctx.Err(); err != nil {
			return c.wrap(cl, err) // nothing sent yet: never ambiguous
		}
		tok := ""
		if c.auth != nil {
			t, err := c.auth.token(ctx)
			if err != nil {
				if authErr != nil {
					return authErr
				}
				return c.wrap(cl, err)
			}
			if authErr != nil && t == used {
				return authErr // the source has nothing newer: do not resend
			}
			tok, used = t, t
		}
		resp, sent, err := c.send(ctx, cl, tok)
		if err != nil {
			return c.ambiguousIf(cl, sent, c.wrap(cl, err))
		}
		if resp.StatusCode == http.StatusUnauthorized && try == 0 && c.auth != nil {
			err := c.responseError(resp, cl, tok)
			resp.Body.Close()
			if !c.auth.invalidate(tok) {
				return err
			}
			// A 401 is a definite refusal, so one resend with a fresh token
			// is safe even for the POST.
			c.log.DebugContext(ctx, "bikeep: 401, renewing token", "route", cl.route, "method", cl.method)
			authErr, _ = err.(*APIError)
			if authErr == nil {
				return err
			}
			continue
		}
		return c.handle(resp, cl, tok, v)
	}
	return authErr
}

// send performs one (retried, for GET) exchange. sent reports whether the
// request may have reached the server.
func (c *Client) send(ctx context.Context, cl call, tok string) (*http.Response, bool, error) {
	rc := c.getRC
	var sent atomic.Bool
	if cl.cmd != nil {
		rc = c.postRC
		// Once a connection is in hand the request may be written; before
		// that (dial or DNS failure) it provably was not.
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			GotConn: func(httptrace.GotConnInfo) { sent.Store(true) },
		})
		ctx = context.WithValue(ctx, sentKey{}, &sent)
	}
	var body any
	if cl.body != nil {
		body = cl.body
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, cl.method, c.base+cl.path, body)
	if err != nil {
		return nil, false, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if cl.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := rc.Do(req)
	if err != nil {
		maybeSent := cl.cmd != nil && (sent.Load() || !isDialError(err))
		return nil, maybeSent, err
	}
	return resp, true, nil
}

// retryUnsent is the POST retry policy: retry only a request that provably
// never left (no connection obtained and a dial/DNS failure).
func retryUnsent(ctx context.Context, _ *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err == nil {
		return false, nil
	}
	sent, _ := ctx.Value(sentKey{}).(*atomic.Bool)
	return sent != nil && !sent.Load() && isDialError(err), nil
}

// handle maps a final response to a decoded value or an error, and closes it.
func (c *Client) handle(resp *http.Response, cl call, tok string, v any) error {
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		err := c.responseError(resp, cl, tok)
		return c.ambiguousIf(cl, resp.StatusCode >= 500, err)
	}
	if sd, ok := v.(bodyDecoder); ok { // device lists: decoded as they stream in
		if resp.ContentLength > c.maxBody {
			return &BodyTooLargeError{Limit: c.maxBody, Route: cl.route}
		}
		return sd.decodeBody(resp.Body, func(err error) error { return c.wrap(cl, err) })
	}
	b, err := c.readBody(resp, cl)
	if err != nil {
		return c.ambiguousIf(cl, true, err)
	}
	if err := decodeInto(cl.route, b, v); err != nil {
		return c.ambiguousIf(cl, true, err)
	}
	return nil
}

// readBody reads a 2xx body up to the limit.
func (c *Client) readBody(resp *http.Response, cl call) ([]byte, error) {
	if resp.ContentLength > c.maxBody {
		return nil, &BodyTooLargeError{Limit: c.maxBody, Route: cl.route}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return nil, c.wrap(cl, fmt.Errorf("read body: %w", err))
	}
	if int64(len(b)) > c.maxBody {
		return nil, &BodyTooLargeError{Limit: c.maxBody, Route: cl.route}
	}
	return b, nil
}

// responseError builds the *APIError (or *RateLimitError) for a non-2xx answer.
func (c *Client) responseError(resp *http.Response, cl call, tok string) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, min(errBodyLimit, c.maxBody)))
	e := APIError{StatusCode: resp.StatusCode, Method: cl.method, Route: cl.route}
	var eb ErrorBody
	if json.Unmarshal(b, &eb) == nil && (eb.ErrorCode != "" || eb.ErrorMessage != "" || eb.CorrelationID != "") {
		e.ErrorCode = sanitize(eb.ErrorCode, 128, tok)
		e.Message = sanitize(eb.ErrorMessage, 1024, tok)
		e.CorrelationID = sanitize(eb.CorrelationID, 128, tok)
	} else {
		e.Body = sanitize(string(b[:min(len(b), 256)]), 256, tok)
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		ra, _ := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		return &RateLimitError{APIError: e, RetryAfter: ra}
	}
	return &e
}

// wrap prefixes a transport-level error with method and route template,
// dropping the raw URL.
func (c *Client) wrap(cl call, err error) error {
	return fmt.Errorf("bikeep: %s %s: %w", cl.method, cl.route, stripURL(err))
}

func (c *Client) ambiguousIf(cl call, cond bool, err error) error {
	if cl.cmd == nil || !cond {
		return err
	}
	return &AmbiguousSendError{DeviceID: cl.deviceID, Command: cl.cmd.Command, Err: err}
}

// decodeInto unmarshals a JSON object body into v; a *json.RawMessage gets
// a copy of the bytes.
func decodeInto(route string, b []byte, v any) error {
	if raw, ok := v.(*json.RawMessage); ok {
		*raw = append((*raw)[:0], b...)
		return nil
	}
	if err := requireObject(b); err != nil {
		return &DecodeError{Route: route, Err: err}
	}
	if err := json.Unmarshal(b, v); err != nil {
		return &DecodeError{Route: route, Err: err}
	}
	return nil
}

// requireObject rejects bodies that are not a JSON object (empty, null, an
// array...), which json.Unmarshal into a struct would silently accept as
// "nothing".
func requireObject(b []byte) error {
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 {
		return errors.New("empty body")
	}
	if t[0] != '{' {
		return fmt.Errorf("want a JSON object, got %q", firstToken(t))
	}
	return nil
}

func firstToken(b []byte) string {
	if len(b) > 8 {
		b = b[:8]
	}
	return sanitize(string(b), 8, "")
}

// escapeID validates and escapes a path parameter.
func escapeID(kind, id string) (string, error) {
	if id == "" || id == "." || id == ".." {
		return "", fmt.Errorf("bikeep: invalid %s id %q", kind, id)
	}
	return url.PathEscape(id), nil
}
