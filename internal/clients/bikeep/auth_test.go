package bikeep

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/httpx/httpxtest"
)

const (
	testClientID     = "operator-17"
	testClientSecret = "cs-9f8e7d6c5b4a-very-secret"
)

// apiRecorder answers API requests with handler and remembers the bearer
// tokens it saw.
type apiRecorder struct {
	mu     sync.Mutex
	tokens []string
}

func (a *apiRecorder) seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.tokens...)
}

func (a *apiRecorder) wrap(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.tokens = append(a.tokens, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		a.mu.Unlock()
		h(w, r)
	}
}

func newCCClient(t *testing.T, ts *tokenServer, api *apiRecorder, h http.HandlerFunc, extra ...Option) (*Client, *atomic.Int64) {
	t.Helper()
	opts := append([]Option{WithClientCredentials(ts.URL+"/oauth2/token", testClientID, testClientSecret)}, extra...)
	c, hits, _ := newTestClient(t, api.wrap(h), opts...)
	return c, hits
}

func TestClientCredentialsFetchedOnceAndReused(t *testing.T) {
	ts := newTokenServer(t, testClientID, testClientSecret, 3600)
	api := &apiRecorder{}
	c, _ := newCCClient(t, ts, api, respond(200, `{"id":"d"}`))
	for range 3 {
		if _, err := c.GetDevice(context.Background(), "d"); err != nil {
			t.Fatal(err)
		}
	}
	if n := ts.fetches.Load(); n != 1 {
		t.Errorf("token fetched %d times, want 1", n)
	}
	if got := api.seen(); strings.Join(got, ",") != "at-1,at-1,at-1" {
		t.Errorf("tokens seen by the API: %v", got)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	want := map[string]string{"grant_type": "client_credentials", "client_id": testClientID, "client_secret": testClientSecret}
	if len(ts.forms) != 1 || len(ts.forms[0]) != 3 || ts.forms[0]["grant_type"] != want["grant_type"] ||
		ts.forms[0]["client_id"] != want["client_id"] || ts.forms[0]["client_secret"] != want["client_secret"] {
		t.Errorf("token request form %v, want %v", ts.forms, want)
	}
	if ts.basic[0] {
		t.Error("credentials sent as HTTP Basic; NOTES.md documents form fields")
	}
}

func TestClientCredentialsConcurrentCallersShareOneFetch(t *testing.T) {
	ts := newTokenServer(t, testClientID, testClientSecret, 3600)
	c, _ := newCCClient(t, ts, &apiRecorder{}, respond(200, `{"id":"d"}`))
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := c.GetDevice(context.Background(), "d"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := ts.fetches.Load(); n != 1 {
		t.Errorf("token fetched %d times, want 1", n)
	}
}

func TestClientCredentialsRenewedBeforeExpiry(t *testing.T) {
	tests := []struct {
		name      string
		expiresIn int
		// still is a clock advance at which the old token is still used;
		// renew one at which a new one must be fetched.
		still, renew time.Duration
	}{
		{"one hour token renews a minute early", 3600, 58 * time.Minute, 59*time.Minute + 30*time.Second},
		{"short token renews at three quarters", 8, 5 * time.Second, 6500 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTokenServer(t, testClientID, testClientSecret, tc.expiresIn)
			api := &apiRecorder{}
			clk := httpxtest.NewClock(time.Date(2025, 1, 15, 12, 0, 0, 0, time.UTC))
			c, _ := newCCClient(t, ts, api, respond(200, `{"id":"d"}`), withClock(clk.Now))
			get := func() {
				t.Helper()
				if _, err := c.GetDevice(context.Background(), "d"); err != nil {
					t.Fatal(err)
				}
			}
			get()
			clk.Advance(tc.still)
			get()
			if n := ts.fetches.Load(); n != 1 {
				t.Fatalf("after %s: %d fetches, want 1", tc.still, n)
			}
			clk.Advance(tc.renew - tc.still)
			get()
			get()
			if n := ts.fetches.Load(); n != 2 {
				t.Errorf("after %s: %d fetches, want 2", tc.renew, n)
			}
			if got := strings.Join(api.seen(), ","); got != "at-1,at-1,at-2,at-2" {
				t.Errorf("tokens seen: %s", got)
			}
		})
	}
}

func TestUnauthorized(t *testing.T) {
	const env401 = `{"error_code":"ERRORS.UNAUTHORIZED","status_code":401,"correlation_id":"c-401"}`
	t.Run("401 then fresh token then success", func(t *testing.T) {
		ts := newTokenServer(t, testClientID, testClientSecret, 3600)
		api := &apiRecorder{}
		c, hits := newCCClient(t, ts, api, func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") == "Bearer at-1" {
				writeJSON(w, 401, env401)
				return
			}
			writeJSON(w, 200, `{"id":"d"}`)
		})
		d, err := c.GetDevice(context.Background(), "d")
		if err != nil || d.ID != "d" {
			t.Fatalf("got %v, %v", d, err)
		}
		if n := ts.fetches.Load(); n != 2 {
			t.Errorf("token fetches %d, want 2", n)
		}
		wantHits(t, hits.Load(), 2)
		if got := strings.Join(api.seen(), ","); got != "at-1,at-2" {
			t.Errorf("tokens seen: %s", got)
		}
	})
	t.Run("401 twice is an error, not a loop", func(t *testing.T) {
		ts := newTokenServer(t, testClientID, testClientSecret, 3600)
		c, hits := newCCClient(t, ts, &apiRecorder{}, respond(401, env401))
		_, err := c.GetDevice(context.Background(), "d")
		ae := wantErrAs[*APIError](t, err)
		if ae.StatusCode != 401 || ae.CorrelationID != "c-401" {
			t.Errorf("got %+v", ae)
		}
		if n := ts.fetches.Load(); n != 2 {
			t.Errorf("token fetches %d, want 2", n)
		}
		wantHits(t, hits.Load(), 2)
	})
	t.Run("POST 401 is resent once with a fresh token", func(t *testing.T) {
		ts := newTokenServer(t, testClientID, testClientSecret, 3600)
		c, hits := newCCClient(t, ts, &apiRecorder{}, func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") == "Bearer at-1" {
				writeJSON(w, 401, env401)
				return
			}
			writeJSON(w, 200, `{"id":"cmd-1","state":{"value":"NOT_SENT"}}`)
		})
		cmd, err := c.SendCommand(context.Background(), "d", CommandRequest{Command: CmdSyncDevice})
		if err != nil || cmd.ID != "cmd-1" {
			t.Fatalf("got %v, %v", cmd, err)
		}
		wantHits(t, hits.Load(), 2)
	})
	t.Run("POST 401 twice is a definite refusal", func(t *testing.T) {
		ts := newTokenServer(t, testClientID, testClientSecret, 3600)
		c, hits := newCCClient(t, ts, &apiRecorder{}, respond(401, env401))
		_, err := c.SendCommand(context.Background(), "d", CommandRequest{Command: CmdSyncDevice})
		if ae := wantErrAs[*APIError](t, err); ae.StatusCode != 401 {
			t.Errorf("got %+v", ae)
		}
		notAmbiguous(t, err)
		wantHits(t, hits.Load(), 2)
	})
	t.Run("static token 401 is not resent", func(t *testing.T) {
		c, hits, _ := newTestClient(t, respond(401, env401))
		_, err := c.GetDevice(context.Background(), "d")
		if ae := wantErrAs[*APIError](t, err); ae.StatusCode != 401 {
			t.Errorf("got %+v", ae)
		}
		wantHits(t, hits.Load(), 1)
	})
}

func TestTokenEndpointFailure(t *testing.T) {
	ts := newTokenServer(t, testClientID, "the-right-secret", 3600)
	c, hits := newCCClient(t, ts, &apiRecorder{}, respond(200, `{}`))
	_, err := c.GetDevice(context.Background(), "d")
	if err == nil {
		t.Fatal("want an error")
	}
	msg := err.Error()
	if strings.Contains(msg, testClientSecret) || strings.Contains(msg, ts.URL) {
		t.Errorf("Error() leaks: %q", msg)
	}
	if !strings.Contains(msg, "HTTP 401 invalid_client") || !strings.Contains(msg, RouteDevice) {
		t.Errorf("Error() = %q", msg)
	}
	wantHits(t, hits.Load(), 0)
	notAmbiguous(t, err)
}

func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	write := func(tok string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Now().Add(-time.Hour)
	write("tok-aaaa", base)
	api := &apiRecorder{}
	var reject atomic.Bool
	c, hits, _ := newTestClient(t, api.wrap(func(w http.ResponseWriter, r *http.Request) {
		if reject.Load() {
			writeJSON(w, 401, `{"error_code":"ERRORS.UNAUTHORIZED"}`)
			return
		}
		writeJSON(w, 200, `{"id":"d"}`)
	}), WithTokenFile(path))
	get := func() error {
		_, err := c.GetDevice(context.Background(), "d")
		return err
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	write("tok-bbbb", base.Add(time.Minute)) // rotated
	if err := get(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(api.seen(), ","); got != "tok-aaaa,tok-bbbb" {
		t.Errorf("tokens seen: %s", got)
	}
	// A 401 re-reads the file, but an unchanged token is not resent.
	reject.Store(true)
	before := hits.Load()
	if ae := wantErrAs[*APIError](t, get()); ae.StatusCode != 401 {
		t.Errorf("got %+v", ae)
	}
	wantHits(t, hits.Load()-before, 1)

	write("", base.Add(2*time.Minute))
	if err := get(); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty token file: %v", err)
	}
}

func TestNoAuthSendsNoHeader(t *testing.T) {
	var auth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth.Store(r.Header.Get("Authorization"))
		writeJSON(w, 200, `{"id":"d"}`)
	}))
	defer srv.Close()
	c, err := NewClient(srv.URL, WithHTTPClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetDevice(context.Background(), "d"); err != nil {
		t.Fatal(err)
	}
	if got := auth.Load().(string); got != "" {
		t.Errorf("Authorization %q", got)
	}
}
