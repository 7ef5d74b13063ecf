package copri

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fleetd/fleetd/internal/clients/httpx"
)

// maxSnippet bounds the text of an error body kept in an *APIError.
const maxSnippet = 200

// post sends one COPRI request: POST <server>/APIjsonserver with every
// parameter, secrets included, in the form body, so that no URL (which
// proxies and libraries log) ever carries them. It returns the body of a
// 2xx JSON answer.
func (c *Client) post(ctx context.Context, server, name string, form url.Values) ([]byte, error) {
	form.Set("request", name)
	encoded := []byte(form.Encode())
	defer clear(encoded)
	h := http.Header{}
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	h.Set("Accept", "application/json")

	start := time.Now()
	resp, _, err := c.http.Do(ctx, httpx.Request{
		Method: http.MethodPost, Route: "request=" + name, URL: server + "/APIjsonserver",
		Header: h, Body: encoded, Policy: httpx.RetryIdempotent,
	})
	if err != nil {
		return nil, fmt.Errorf("copri request=%s: %w", name, err)
	}
	defer resp.Body.Close()
	body, err := httpx.ReadCapped(resp, c.maxBody)
	if errors.Is(err, httpx.ErrBodyTooLarge) {
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
	return httpx.Sanitize(httpx.StripTags(string(t)), maxSnippet, c.secrets()...)
}
