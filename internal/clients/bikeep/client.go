package bikeep

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/fleetd/fleetd/internal/clients/httpx"
	"github.com/fleetd/fleetd/internal/clients/limits"
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
	DefaultMaxBodyBytes = httpx.DefaultMaxBodyBytes
	DefaultMaxAttempts  = httpx.DefaultMaxAttempts
	DefaultMinWait      = httpx.DefaultMinWait
	DefaultMaxWait      = httpx.DefaultMaxWait
	DefaultUserAgent    = "fleetd-bikeep-client"
)

// Instrumenter observes the client's traffic (requests and retries by
// route template, the client-wide backoff, shortened vendor values); fleetd
// backs it with Prometheus metrics.
type Instrumenter = httpx.Instrumenter

// Client talks to the Bikeep Parking Device and Location APIs. It is safe
// for concurrent use.
type Client struct {
	base      string // scheme://host[/prefix] without a trailing slash
	http      *httpx.Client
	auth      tokenSource // nil: no Authorization header
	maxBody   int64
	inst      Instrumenter
	log       *slog.Logger
	userAgent string
	// lists decodes device-list bodies as they stream in (WalkLocationDevices).
	lists *ListDecoder
}

type config struct {
	http      httpx.Settings
	mkAuth    []func(*config) tokenSource
	userAgent string
	now       func() time.Time
}

// Option configures a Client.
type Option func(*config) error

// WithHTTPClient sets the base HTTP client (its transport and timeout). The
// client is copied, not modified. Token requests use it too.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) error { return c.http.SetHTTPClient(hc) }
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
				hc:   tokenHTTPClient(c.http.HTTPClient),
				now:  c.now,
				gate: httpx.NewGate("token fetch", httpx.GateBase, httpx.GateMax, c.now),
				log:  func(ctx context.Context, msg string, args ...any) { c.http.Logger.DebugContext(ctx, msg, args...) },
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
	return func(c *config) error { return c.http.SetMaxBodyBytes(n) }
}

// WithRetry sets the retry policy of GET requests: at most maxAttempts
// attempts, exponential backoff with jitter between minWait and maxWait,
// Retry-After honoured up to maxWait. Defaults: 4, 250ms, 10s. Retries of
// the whole client are also bounded by a budget (about 10 % of its
// requests), and a 429 pauses every request of the client.
func WithRetry(maxAttempts int, minWait, maxWait time.Duration) Option {
	return func(c *config) error { return c.http.SetRetry(maxAttempts, minWait, maxWait) }
}

// WithInstrumenter reports every attempt and retry to in.
func WithInstrumenter(in Instrumenter) Option {
	return func(c *config) error { return c.http.SetInstrumenter(in) }
}

// WithLogger sets the logger for debug output (retries, token renewal).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error { return c.http.SetLogger(l) }
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
		http:      httpx.Settings{HTTPClient: &http.Client{}},
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
	if cfg.http.Logger == nil {
		cfg.http.Logger = slog.New(slog.DiscardHandler)
	}
	// Retry-After is honoured up to the retry maximum, as WithRetry says.
	hc := httpx.New("bikeep", cfg.http, httpx.RetryAfterUpToMaxWait)

	c := &Client{
		base:      strings.TrimRight(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"),
		http:      hc,
		maxBody:   hc.MaxBodyBytes(),
		lists:     NewListDecoder(hc.MaxBodyBytes(), hc.Instrumenter().ObserveTruncated),
		inst:      hc.Instrumenter(),
		log:       cfg.http.Logger,
		userAgent: cfg.userAgent,
	}
	if len(cfg.mkAuth) == 1 {
		c.auth = cfg.mkAuth[0](&cfg)
	}
	return c, nil
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
	h := http.Header{}
	h.Set("Accept", "application/json")
	h.Set("User-Agent", c.userAgent)
	if cl.body != nil {
		h.Set("Content-Type", "application/json")
	}
	if tok != "" {
		h.Set("Authorization", "Bearer "+tok)
	}
	policy := httpx.RetryIdempotent
	if cl.cmd != nil {
		policy = httpx.RetryUnsent
	}
	resp, sent, err := c.http.Do(ctx, httpx.Request{
		Method: cl.method, Route: cl.route, URL: c.base + cl.path, Header: h, Body: cl.body, Policy: policy,
	})
	if resp != nil && resp.StatusCode >= 300 {
		c.log.DebugContext(ctx, "bikeep: error response", "route", cl.route, "method", cl.method, "status", resp.StatusCode)
	}
	return resp, sent, err
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
	b, err := httpx.ReadCapped(resp, c.maxBody)
	switch {
	case errors.Is(err, httpx.ErrBodyTooLarge):
		return nil, &BodyTooLargeError{Limit: c.maxBody, Route: cl.route}
	case err != nil:
		return nil, c.wrap(cl, fmt.Errorf("read body: %w", err))
	}
	return b, nil
}

// responseError builds the *APIError (or *RateLimitError) for a non-2xx answer.
func (c *Client) responseError(resp *http.Response, cl call, tok string) error {
	b := httpx.ReadErrorBody(resp, c.maxBody)
	e := APIError{StatusCode: resp.StatusCode, Method: cl.method, Route: cl.route}
	var eb ErrorBody
	if json.Unmarshal(b, &eb) == nil && (eb.ErrorCode != "" || eb.ErrorMessage != "" || eb.CorrelationID != "") {
		e.ErrorCode = httpx.Sanitize(eb.ErrorCode, 128, tok)
		e.Message = httpx.Sanitize(eb.ErrorMessage, limits.MaxTextBytes, tok)
		e.CorrelationID = httpx.Sanitize(eb.CorrelationID, 128, tok)
	} else {
		e.Body = httpx.Sanitize(string(b[:min(len(b), 256)]), 256, tok)
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		ra, _ := httpx.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		return &RateLimitError{APIError: e, RetryAfter: ra}
	}
	return &e
}

// wrap prefixes a transport-level error with method and route template,
// dropping the raw URL.
func (c *Client) wrap(cl call, err error) error {
	return fmt.Errorf("bikeep: %s %s: %w", cl.method, cl.route, httpx.StripURL(err))
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
	return httpx.Sanitize(string(b), 8)
}

// escapeID validates and escapes a path parameter. Only an id that passes
// limits.ID goes into a URL: one that is too long or not valid UTF-8 would
// be rewritten on the way (and name another device), so it is refused.
func escapeID(kind, id string) (string, error) {
	if err := limits.ID(id); err != nil {
		return "", fmt.Errorf("bikeep: invalid %s id: %w", kind, err)
	}
	if id == "." || id == ".." {
		return "", fmt.Errorf("bikeep: invalid %s id %q", kind, id)
	}
	return url.PathEscape(id), nil
}
