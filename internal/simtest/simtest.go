// Package simtest drives the simulator's HTTP routes from tests: a settable
// clock for sim.Options.Now and a client that speaks the routes' Bikeep
// bearer auth and COPRI GET parameters. It imports neither internal/sim nor
// any client (the simulator's import test forbids clients, so it cannot use
// httpxtest.Clock), so the simulator's own tests can use it as well as the
// tests that decode its answers with the real clients' types
// (internal/simcheck).
package simtest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Clock is a settable fake clock, safe for the simulator's goroutines.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock on by d and returns the new time.
func (c *Clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// Credentials are the simulator's accounts (sim.DefaultClientID and the
// like), passed in because this package does not import the simulator.
type Credentials struct {
	ClientID, ClientSecret                  string
	CopriMerchant, CopriUser, CopriPassword string
}

// Client sends requests to a simulator served at URL. Every failure to
// reach it ends the test; answers are returned as they came, whatever the
// status, unless the method says otherwise.
type Client struct {
	T     testing.TB
	URL   string
	HTTP  *http.Client
	Creds Credentials
	// Token is the bearer token Get and Command send (see FetchToken).
	Token string
}

// Do sends a request and returns the response and its body; token and
// contentType are left out when empty.
func (c *Client) Do(method, path, token, body, contentType string) (*http.Response, []byte) {
	c.T.Helper()
	req, err := http.NewRequest(method, c.URL+path, strings.NewReader(body))
	if err != nil {
		c.T.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		c.T.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.T.Fatal(err)
	}
	return resp, b
}

// FetchToken gets a token by OAuth2 client credentials; the request must
// answer 200.
func (c *Client) FetchToken() string {
	c.T.Helper()
	resp, body := c.Do(http.MethodPost, "/oauth2/token", "", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {c.Creds.ClientID}, "client_secret": {c.Creds.ClientSecret},
	}.Encode(), "application/x-www-form-urlencoded")
	if resp.StatusCode != http.StatusOK {
		c.T.Fatalf("token: status %d: %s", resp.StatusCode, body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	MustUnmarshal(c.T, body, &tok)
	return tok.AccessToken
}

// Get is a GET with Token that must answer 200.
func (c *Client) Get(path string) []byte {
	c.T.Helper()
	resp, body := c.Do(http.MethodGet, path, c.Token, "", "")
	if resp.StatusCode != http.StatusOK {
		c.T.Fatalf("GET %s: status %d: %s", path, resp.StatusCode, body)
	}
	return body
}

// Command posts a command to a device with Token and returns the status and
// the body.
func (c *Client) Command(deviceID string, req map[string]any) (int, []byte) {
	c.T.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		c.T.Fatal(err)
	}
	resp, body := c.Do(http.MethodPost, "/device/v1/devices/"+deviceID+"/commands", c.Token, string(b), "application/json")
	return resp.StatusCode, body
}

// Copri calls /APIjsonserver with GET parameters; it must answer 200 with
// a JSON object.
func (c *Client) Copri(params url.Values) map[string]any {
	c.T.Helper()
	resp, body := c.Do(http.MethodGet, "/APIjsonserver?"+params.Encode(), "", "", "")
	if resp.StatusCode != http.StatusOK {
		c.T.Fatalf("copri %s: status %d", params.Get("request"), resp.StatusCode)
	}
	var m map[string]any
	MustUnmarshal(c.T, body, &m)
	return m
}

// CopriLogin logs in with Creds and returns the authcookie; the login must
// succeed.
func (c *Client) CopriLogin() string {
	c.T.Helper()
	m := c.Copri(url.Values{"request": {"authorization"}, "merchant_id": {c.Creds.CopriMerchant},
		"user_id": {c.Creds.CopriUser}, "user_pw": {c.Creds.CopriPassword}, "hw_id": {"fleetd-test-000001"}})
	env, _ := m["shareejson"].(map[string]any)
	state, _ := env["response_state"].(string)
	cookie, _ := env["authcookie"].(string)
	if !strings.HasPrefix(state, "OK") || cookie == "" {
		c.T.Fatalf("login failed: %v", env["response_state"])
	}
	return cookie
}

// MustUnmarshal decodes b into v or ends the test, quoting the start of b.
func MustUnmarshal(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("unmarshal %.200s: %v", b, err)
	}
}
