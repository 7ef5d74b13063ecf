package copri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // the default zone must load on hosts without tzdata

	"github.com/fleetd/fleetd/internal/clients/httpx"
	"github.com/fleetd/fleetd/internal/clients/limits"
	"github.com/fleetd/fleetd/internal/secret"
)

// Request names, as sent in request= and used in the instrumentation route.
const (
	reqAuthorization     = "authorization"
	reqAuthout           = "authout"
	reqUserBikesOccupied = "user_bikes_occupied"
	reqBikesAll          = "bikes_all"
)

// DefaultMaxBodyBytes bounds a response body unless WithMaxBodyBytes says otherwise.
const DefaultMaxBodyBytes int64 = 8 << 20

// minHWIDLen is COPRI's documented minimum length of hw_id.
const minHWIDLen = 16

// Credentials identify fleetd to COPRI. Password is only revealed into the
// authorization request's form body.
type Credentials struct {
	MerchantID string
	UserID     string // the account's e-mail address
	Password   secret.String
	HWID       string // stable client identifier, at least 16 characters
	Lang       string // optional, e.g. "en"
}

// Instrumenter observes the client's HTTP traffic. route is
// "request=<name>", e.g. "request=user_bikes_occupied"; code is the HTTP
// status or 0 when no response arrived. ObserveRequest is called once per
// attempt, ObserveRetry once per retried attempt; ObserveBackoff reports the
// client-wide pause after throttling and ObserveTruncated every vendor value
// shortened to its cap.
type Instrumenter = httpx.Instrumenter

// Option configures a Client. A bad value is an error from NewClient.
type Option func(*options) error

type options struct {
	http httpx.Settings
	loc  *time.Location
}

// WithHTTPClient sets the underlying HTTP client (timeouts, TLS, proxies).
// The client is copied, not modified; redirects are never followed, because
// a 307/308 would replay the password-bearing form body to another location.
func WithHTTPClient(hc *http.Client) Option {
	return func(o *options) error { return o.http.SetHTTPClient(hc) }
}

// WithMaxBodyBytes bounds response bodies (default DefaultMaxBodyBytes).
func WithMaxBodyBytes(n int64) Option {
	return func(o *options) error { return o.http.SetMaxBodyBytes(n) }
}

// WithInstrumenter reports every HTTP attempt and retry.
func WithInstrumenter(i Instrumenter) Option {
	return func(o *options) error { return o.http.SetInstrumenter(i) }
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { return o.http.SetLogger(l) }
}

// WithTimeZone sets the zone of timestamps that COPRI sends without an
// offset (default Europe/Berlin, the COPRI servers' zone).
func WithTimeZone(loc *time.Location) Option {
	return func(o *options) error {
		if loc == nil {
			return errors.New("nil time zone")
		}
		o.loc = loc
		return nil
	}
}

// WithRetry bounds transport retries: at most maxRetries further attempts
// after the first, waiting between waitMin and waitMax (exponential backoff
// with jitter) unless the server's Retry-After says otherwise (honoured up
// to httpx.MaxRetryAfter). Retries of the whole client are also bounded by
// a budget (about 10 % of its requests), and a 429 pauses every request.
func WithRetry(maxRetries int, waitMin, waitMax time.Duration) Option {
	return func(o *options) error {
		if maxRetries < 0 {
			return fmt.Errorf("max retries must not be negative, got %d", maxRetries)
		}
		return o.http.SetRetry(maxRetries+1, waitMin, waitMax)
	}
}

// Client talks to one COPRI operator: its primary server for the session
// and the account's rentals, its operator server for the fleet. It keeps
// one session (authcookie) and renews it when COPRI stops honouring it.
// Safe for concurrent use.
type Client struct {
	primary  string // base URLs, without trailing slash
	operator string
	creds    Credentials
	http     *httpx.Client
	maxBody  int64
	log      *slog.Logger
	loc      *time.Location
	inst     Instrumenter

	// login admits one login at a time, shared by every caller, and after a
	// failed one makes callers fail fast with its error for a backoff.
	login *httpx.Gate

	mu     sync.Mutex
	cookie secret.String
	gen    uint64 // incremented by every login/logout, to detect renewals by others
	env    Envelope
}

// NewClient returns a client for the COPRI primary server primaryURL and
// operator server operatorURL (which may be empty when bikes_all is not
// used). It does not contact the servers; the first data call logs in.
func NewClient(primaryURL, operatorURL string, creds Credentials, opts ...Option) (*Client, error) {
	o := options{http: httpx.Settings{HTTPClient: &http.Client{Timeout: 30 * time.Second}}}
	if err := o.http.SetRetry(4, 250*time.Millisecond, 5*time.Second); err != nil {
		return nil, fmt.Errorf("copri: %w", err)
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("copri: %w", err)
		}
	}
	if o.loc == nil {
		loc, err := time.LoadLocation("Europe/Berlin")
		if err != nil {
			loc = time.UTC
		}
		o.loc = loc
	}
	if o.http.Logger == nil {
		o.http.Logger = slog.New(slog.DiscardHandler)
	}
	primary, err := baseURL("primary", primaryURL)
	if err != nil {
		return nil, err
	}
	var operator string
	if strings.TrimSpace(operatorURL) != "" {
		if operator, err = baseURL("operator", operatorURL); err != nil {
			return nil, err
		}
	}
	switch {
	case strings.TrimSpace(creds.MerchantID) == "":
		return nil, errors.New("copri: merchant id is empty")
	case strings.TrimSpace(creds.UserID) == "":
		return nil, errors.New("copri: user id is empty")
	case creds.Password.IsZero():
		return nil, errors.New("copri: password is empty")
	case len(creds.HWID) < minHWIDLen:
		return nil, fmt.Errorf("copri: hw_id must be at least %d characters, got %d", minHWIDLen, len(creds.HWID))
	}

	hc := httpx.New("copri", o.http, httpx.MaxRetryAfter)
	return &Client{
		primary:  primary,
		operator: operator,
		creds:    creds,
		http:     hc,
		maxBody:  hc.MaxBodyBytes(),
		log:      o.http.Logger,
		loc:      o.loc,
		inst:     hc.Instrumenter(),
		login:    httpx.NewGate("login", httpx.GateBase, httpx.GateMax, nil),
	}, nil
}

// baseURL validates a configured server URL. Errors never echo the URL: a
// mistyped one may carry credentials.
func baseURL(which, raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	switch {
	case err != nil:
		return "", fmt.Errorf("copri: %s URL is not a valid URL", which)
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("copri: %s URL must be http or https", which)
	case u.Host == "":
		return "", fmt.Errorf("copri: %s URL has no host", which)
	case u.User != nil:
		return "", fmt.Errorf("copri: %s URL must not contain credentials", which)
	case u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("copri: %s URL must not have a query or fragment", which)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// Session returns the envelope of the current session's login response
// (for status pages: user, groups, copri_version), and false when there is
// no session. The authcookie is left out: nothing outside the client needs it.
func (c *Client) Session() (Envelope, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	env := c.env
	env.AuthCookie = ""
	return env, !c.cookie.IsZero()
}

// Login authenticates (request=authorization on the primary server) and
// keeps the session for later calls, replacing any previous one. A refusal
// or a response without authcookie is an *AuthError.
func (c *Client) Login(ctx context.Context) error {
	leave, err := c.login.Enter(ctx)
	if err != nil {
		return err
	}
	defer leave()
	_, _, err = c.loginGated(ctx)
	return err
}

// loginGated logs in unless the gate is shut after a failed login, and
// records the outcome; the caller is inside the gate.
func (c *Client) loginGated(ctx context.Context) (secret.String, uint64, error) {
	if err := c.login.Shut(); err != nil {
		return "", 0, err
	}
	cookie, gen, err := c.loginLocked(ctx)
	c.login.Done(ctx, err)
	return cookie, gen, err
}

// loginLocked performs the login; the caller is inside the login gate.
func (c *Client) loginLocked(ctx context.Context) (secret.String, uint64, error) {
	form := url.Values{
		"merchant_id": {c.creds.MerchantID},
		"user_id":     {c.creds.UserID},
		"user_pw":     {c.creds.Password.Reveal()},
		"hw_id":       {c.creds.HWID},
	}
	if c.creds.Lang != "" {
		form.Set("lang", c.creds.Lang)
	}
	env, err := c.roundTrip(ctx, c.primary, reqAuthorization, form, nil)
	if err == nil {
		switch {
		case !env.OK():
			err = &AuthError{Request: reqAuthorization, Reason: "login refused",
				ResponseState: c.scrub(env.ResponseState, env.AuthCookie), ResponseText: c.scrub(env.ResponseText, env.AuthCookie)}
		case env.AuthCookie.IsZero():
			err = &AuthError{Request: reqAuthorization, Reason: "login returned no authcookie",
				ResponseState: c.scrub(env.ResponseState), ResponseText: c.scrub(env.ResponseText)}
		}
	}
	c.mu.Lock()
	c.gen++
	gen := c.gen
	if err != nil {
		// The old session is not trustworthy either: start afresh next time.
		c.cookie, c.env = "", Envelope{}
		c.mu.Unlock()
		return "", gen, err
	}
	c.cookie, c.env = env.AuthCookie, env
	c.mu.Unlock()
	c.log.Info("copri login", "server", c.primary, "copri_version", env.CopriVersion)
	return env.AuthCookie, gen, nil
}

// Logout ends the session (request=authout). The session is forgotten even
// when the server's answer is an error. Without a session it does nothing.
func (c *Client) Logout(ctx context.Context) error {
	leave, err := c.login.Enter(ctx)
	if err != nil {
		return err
	}
	defer leave()
	c.mu.Lock()
	cookie := c.cookie
	c.cookie, c.env = "", Envelope{}
	c.gen++
	c.mu.Unlock()
	if cookie.IsZero() {
		return nil
	}
	env, err := c.roundTrip(ctx, c.primary, reqAuthout, url.Values{"authcookie": {cookie.Reveal()}}, nil)
	if err != nil {
		return err
	}
	if !env.OK() {
		return &FailureError{Request: reqAuthout, ResponseState: c.scrub(env.ResponseState, cookie), ResponseText: c.scrub(env.ResponseText, cookie)}
	}
	return nil
}

// UserBikesOccupied returns the account's open rentals (primary server),
// sorted by booking id.
func (c *Client) UserBikesOccupied(ctx context.Context) ([]Rental, error) {
	var rentals []Rental
	err := c.query(ctx, c.primary, reqUserBikesOccupied, func(top *wireTop) error {
		var err error
		rentals, err = parseRentals(reqUserBikesOccupied, top.BikesOccupied, c.loc, c.inst.ObserveTruncated)
		return err
	})
	if err != nil {
		return nil, err
	}
	return rentals, nil
}

// BikesAll returns the operator's whole fleet (operator server; needs a
// service account), sorted by bike id.
func (c *Client) BikesAll(ctx context.Context) ([]Bike, error) {
	if c.operator == "" {
		return nil, errors.New("copri request=bikes_all: no operator URL configured")
	}
	var bikes []Bike
	err := c.query(ctx, c.operator, reqBikesAll, func(top *wireTop) error {
		var err error
		bikes, err = parseBikes(reqBikesAll, top.Bikes, c.loc, c.inst.ObserveTruncated)
		return err
	})
	if err != nil {
		return nil, err
	}
	return bikes, nil
}

// query performs an authenticated request. When COPRI rejects the session
// (non-OK state, or no authcookie in the answer) it logs in again once and
// repeats the request once; a second rejection is returned as is.
func (c *Client) query(ctx context.Context, server, name string, use func(*wireTop) error) error {
	cookie, gen, fresh, err := c.session(ctx)
	if err != nil {
		return err
	}
	for retried := false; ; retried = true {
		err := c.queryOnce(ctx, server, name, cookie, use)
		if err == nil || !sessionRejected(err) || fresh || retried {
			return err
		}
		c.log.Warn("copri session rejected, logging in again", "request", name, "err", err)
		if cookie, gen, err = c.renew(ctx, gen); err != nil {
			return err
		}
	}
}

func (c *Client) queryOnce(ctx context.Context, server, name string, cookie secret.String, use func(*wireTop) error) error {
	var useErr error
	env, err := c.roundTrip(ctx, server, name, url.Values{"authcookie": {cookie.Reveal()}}, func(env Envelope, top *wireTop) {
		if env.OK() && !env.AuthCookie.IsZero() {
			useErr = use(top)
		}
	})
	switch {
	case err != nil:
		return err
	case !env.OK():
		return &FailureError{Request: name, ResponseState: c.scrub(env.ResponseState, cookie, env.AuthCookie),
			ResponseText: c.scrub(env.ResponseText, cookie, env.AuthCookie)}
	case env.AuthCookie.IsZero():
		return &AuthError{Request: name, Reason: "response carries no authcookie (session dropped)",
			ResponseState: c.scrub(env.ResponseState, cookie), ResponseText: c.scrub(env.ResponseText, cookie)}
	}
	return useErr
}

func sessionRejected(err error) bool {
	var fe *FailureError
	var ae *AuthError
	return errors.As(err, &fe) || errors.As(err, &ae)
}

// session returns the current authcookie, logging in first when there is
// none; fresh reports that this call did the login.
func (c *Client) session(ctx context.Context) (cookie secret.String, gen uint64, fresh bool, err error) {
	c.mu.Lock()
	cookie, gen = c.cookie, c.gen
	c.mu.Unlock()
	if !cookie.IsZero() {
		return cookie, gen, false, nil
	}
	leave, err := c.login.Enter(ctx)
	if err != nil {
		return "", 0, false, err
	}
	defer leave()
	c.mu.Lock()
	cookie, gen = c.cookie, c.gen
	c.mu.Unlock()
	if !cookie.IsZero() {
		return cookie, gen, true, nil // a concurrent caller just logged in
	}
	cookie, gen, err = c.loginGated(ctx)
	return cookie, gen, true, err
}

// renew replaces the session that failed (generation stale), unless a
// concurrent caller already did.
func (c *Client) renew(ctx context.Context, stale uint64) (secret.String, uint64, error) {
	leave, err := c.login.Enter(ctx)
	if err != nil {
		return "", 0, err
	}
	defer leave()
	c.mu.Lock()
	cookie, gen := c.cookie, c.gen
	c.mu.Unlock()
	if gen != stale && !cookie.IsZero() {
		return cookie, gen, nil
	}
	return c.loginGated(ctx)
}

// roundTrip posts the request, decodes the envelope and hands the raw data
// to use (which may be nil) while it is still alive; afterwards the body
// and the data are zeroed, since they may hold lock key material.
func (c *Client) roundTrip(ctx context.Context, server, name string, form url.Values, use func(Envelope, *wireTop)) (Envelope, error) {
	body, err := c.post(ctx, server, name, form)
	if err != nil {
		return Envelope{}, err
	}
	defer clear(body)
	top, env, err := decodeTop(name, body)
	if err != nil {
		return Envelope{}, err
	}
	defer top.wipe()
	c.capEnvelope(&env)
	if use != nil {
		use(env, top)
	}
	return env, nil
}

// capEnvelope shortens the envelope's display strings (they reach the
// status page and log lines) and its free text; the authcookie is a secret
// and never shown, so it is left as it came.
func (c *Client) capEnvelope(env *Envelope) {
	for _, f := range []struct {
		name string
		s    *string
		max  int
	}{
		{"response", &env.Response, limits.MaxNameBytes},
		{"response_state", &env.ResponseState, limits.MaxTextBytes},
		{"response_text", &env.ResponseText, limits.MaxTextBytes},
		{"user_id", &env.UserID, limits.MaxNameBytes},
		{"copri_version", &env.CopriVersion, limits.MaxNameBytes},
		{"uri_primary", &env.URIPrimary, limits.MaxNameBytes},
		{"clearing_cache", &env.ClearingCache, limits.MaxNameBytes},
		{"debuglevel", &env.DebugLevel, limits.MaxNameBytes},
		{"lang", &env.Lang, limits.MaxNameBytes},
	} {
		if out, cut := limits.Text(*f.s, f.max); cut {
			*f.s = out
			c.inst.ObserveTruncated(f.name)
		}
	}
	if len(env.UserGroup) > maxListItems {
		env.UserGroup = env.UserGroup[:maxListItems:maxListItems]
		c.inst.ObserveTruncated("user_group")
	}
	for i := range env.UserGroup {
		if out, cut := limits.Name(env.UserGroup[i]); cut {
			env.UserGroup[i] = out
			c.inst.ObserveTruncated("user_group")
		}
	}
}

// scrub makes server text safe for an error string or a log line: the
// password and the given cookies masked (in case a server echoes them into
// response_text), control characters dropped, and capped at
// limits.MaxTextBytes.
func (c *Client) scrub(s string, cookies ...secret.String) string {
	if s == "" {
		return s
	}
	return httpx.Sanitize(s, limits.MaxTextBytes, c.secrets(cookies...)...)
}

// secrets lists the revealed password and session cookies to mask.
func (c *Client) secrets(cookies ...secret.String) []string {
	out := []string{c.creds.Password.Reveal()}
	for _, ck := range cookies {
		out = append(out, ck.Reveal())
	}
	c.mu.Lock()
	out = append(out, c.cookie.Reveal())
	c.mu.Unlock()
	return out
}
