package copri

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/hashicorp/go-retryablehttp"
)

// maxRetryAfter is the longest Retry-After fleetd waits out; a server asking
// for more gets its error reported instead, to be tried on the next walk.
const maxRetryAfter = time.Minute

type routeKey struct{}

func routeOf(ctx context.Context) string {
	r, _ := ctx.Value(routeKey{}).(string)
	return r
}

type nopInstrumenter struct{}

func (nopInstrumenter) ObserveRequest(string, string, int, time.Duration) {}
func (nopInstrumenter) ObserveRetry(string, string)                       {}

// instrumentedTransport times every attempt, including retried ones.
type instrumentedTransport struct {
	next  http.RoundTripper
	instr Instrumenter
}

func (t instrumentedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	code := 0
	if err == nil {
		code = resp.StatusCode
	}
	t.instr.ObserveRequest(routeOf(r.Context()), r.Method, code, time.Since(start))
	return resp, err
}

func newRetryClient(o options, log *slog.Logger) *retryablehttp.Client {
	hc := &http.Client{Timeout: 30 * time.Second}
	if o.httpClient != nil {
		cp := *o.httpClient
		hc = &cp
	}
	next := hc.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	hc.Transport = instrumentedTransport{next: next, instr: o.instr}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	rc := retryablehttp.NewClient()
	rc.HTTPClient = hc
	rc.Logger = nil // we log ourselves, without the library's request dumps
	rc.RetryMax = o.retryMax
	rc.RetryWaitMin = o.waitMin
	rc.RetryWaitMax = o.waitMax
	rc.CheckRetry = checkRetry
	rc.Backoff = backoff
	// Hand back the last response (e.g. the final 502) so it becomes an
	// *APIError with its status, not an opaque "giving up" error.
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	rc.RequestLogHook = func(_ retryablehttp.Logger, r *http.Request, attempt int) {
		if attempt > 0 {
			route := routeOf(r.Context())
			o.instr.ObserveRetry(route, r.Method)
			log.Debug("copri retry", "route", route, "attempt", attempt+1)
		}
	}
	return rc
}

// checkRetry retries transport errors, 429 and 5xx (go-retryablehttp's
// default policy), but not when the server asks for a longer pause than we
// are willing to wait or than the context has left.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err == nil && resp != nil {
		if d, ok := retryAfter(resp); ok {
			if d > maxRetryAfter {
				return false, nil
			}
			if deadline, has := ctx.Deadline(); has && time.Until(deadline) < d {
				return false, nil
			}
		}
	}
	return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
}

// backoff honours Retry-After, else waits exponentially longer with jitter
// (half fixed, half random) so a fleet of clients does not retry in step.
func backoff(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
	if d, ok := retryAfter(resp); ok {
		return d
	}
	ceil := hi
	if attempt < 30 {
		if d := lo << attempt; d > 0 && d < hi {
			ceil = d
		}
	}
	half := ceil / 2
	if half <= 0 {
		return ceil
	}
	return half + rand.N(half+1)
}

// retryAfter reads Retry-After (seconds or HTTP date) on a 429 or 503.
func retryAfter(resp *http.Response) (time.Duration, bool) {
	if resp == nil || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		return 0, false
	}
	h := strings.TrimSpace(resp.Header.Get("Retry-After"))
	if h == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(h, 10, 64); err == nil {
		if secs < 0 || secs > int64(24*time.Hour/time.Second) {
			return 0, false
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}

var errBodyTooLarge = errors.New("body too large")

// post sends one COPRI request: POST <server>/APIjsonserver with every
// parameter, secrets included, in the form body, so that no URL (which
// proxies and libraries log) ever carries them. It returns the body of a
// 2xx JSON answer.
func (c *Client) post(ctx context.Context, server, name string, form url.Values) ([]byte, error) {
	form.Set("request", name)
	encoded := []byte(form.Encode())
	defer clear(encoded)
	ctx = context.WithValue(ctx, routeKey{}, "request="+name)
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, server+"/APIjsonserver", encoded)
	if err != nil {
		return nil, fmt.Errorf("copri request=%s: building request: %w", name, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")

	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, fmt.Errorf("copri request=%s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.ContentLength > c.maxBody {
		return nil, &BodyTooLargeError{Request: name, Limit: c.maxBody}
	}
	body, err := readCapped(resp.Body, c.maxBody)
	if errors.Is(err, errBodyTooLarge) {
		return nil, &BodyTooLargeError{Request: name, Limit: c.maxBody}
	}
	if err != nil {
		return nil, fmt.Errorf("copri request=%s: reading response: %w", name, err)
	}
	c.log.Debug("copri response", "route", "request="+name, "status", resp.StatusCode,
		"bytes", len(body), "duration", time.Since(start))
	if resp.StatusCode < 200 || resp.StatusCode > 299 || looksHTML(body) {
		defer clear(body)
		return nil, &APIError{Request: name, StatusCode: resp.StatusCode, Body: c.snippet(name, body)}
	}
	return body, nil
}

func readCapped(r io.Reader, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		clear(body)
		return nil, err
	}
	if int64(len(body)) > limit {
		clear(body)
		return nil, errBodyTooLarge
	}
	return body, nil
}

func looksHTML(body []byte) bool {
	t := bytes.TrimSpace(body)
	return len(t) > 0 && t[0] == '<'
}

// snippet summarises an error body for an *APIError. A JSON document is
// represented only by its response_state/response_text (its data may hold
// key material); other text has its tags stripped, its whitespace collapsed,
// secrets masked and its length clipped.
func (c *Client) snippet(name string, body []byte) string {
	t := bytes.TrimSpace(body)
	if len(t) == 0 {
		return ""
	}
	if t[0] == '{' || t[0] == '[' {
		top, env, err := decodeTop(name, t)
		top.wipe()
		if err != nil || (env.ResponseState == "" && env.ResponseText == "") {
			return "(JSON body omitted)"
		}
		return clip(c.scrub(strings.TrimSpace(env.ResponseState+" "+env.ResponseText), env.AuthCookie))
	}
	var b strings.Builder
	inTag, space := false, false
	for _, r := range strings.ToValidUTF8(string(t), "") {
		switch {
		case r == '<':
			inTag = true
		case r == '>' && inTag:
			inTag = false
			space = true
		case inTag:
		case unicode.IsSpace(r) || !unicode.IsPrint(r):
			space = true
		default:
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = false
			b.WriteRune(r)
		}
	}
	const maxSnippet = 200
	s := c.scrub(b.String())
	if len(s) > maxSnippet {
		cut := maxSnippet
		for cut > 0 && !utf8RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
