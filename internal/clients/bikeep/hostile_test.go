package bikeep

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/httpx"
	"github.com/fleetd/fleetd/internal/clients/httpx/httpxtest"
	"github.com/fleetd/fleetd/internal/clients/limits"
)

// These tests run the client against a deliberately hostile vendor: one
// that redirects credentials elsewhere, fails its token endpoint, throttles
// every request, or sends strings meant to flood labels, logs and URLs.

// elsewhere is a second origin that must never be reached.
func elsewhere(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		writeJSON(w, 200, `{"access_token":"stolen","token_type":"Bearer","expires_in":3600}`)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestCredentialsFollowNoRedirect(t *testing.T) {
	other, otherHits := elsewhere(t)
	otherHost := strings.TrimPrefix(other.URL, "http://")
	for _, status := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusFound} {
		t.Run(fmt.Sprintf("token endpoint answers %d", status), func(t *testing.T) {
			tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, other.URL+"/oauth2/token?leak=1", status)
			}))
			t.Cleanup(tokenSrv.Close)
			api := &apiRecorder{}
			c, hits, _ := newTestClient(t, api.wrap(respond(200, `{"id":"d"}`)),
				WithClientCredentials(tokenSrv.URL+"/oauth2/token", testClientID, testClientSecret))
			for range 5 {
				_, err := c.GetDevice(context.Background(), "d")
				if err == nil {
					t.Fatal("want an error")
				}
				msg := err.Error()
				if !strings.Contains(msg, "redirect refused") || !strings.Contains(msg, otherHost) {
					t.Errorf("error does not say a redirect to %s was refused: %q", otherHost, msg)
				}
				if strings.Contains(msg, "leak") || strings.Contains(msg, testClientSecret) || strings.Contains(msg, tokenSrv.URL) {
					t.Errorf("error leaks more than the host: %q", msg)
				}
			}
			if n := otherHits.Load(); n != 0 {
				t.Fatalf("the other origin received %d requests", n)
			}
			wantHits(t, hits.Load(), 0)
		})
	}
	t.Run("API answers a redirect to another origin", func(t *testing.T) {
		for _, op := range []func(*Client) error{
			func(c *Client) error { _, err := c.GetDevice(context.Background(), "d"); return err },
			func(c *Client) error {
				_, err := c.SendCommand(context.Background(), "d", CommandRequest{Command: CmdSyncDevice})
				return err
			},
		} {
			c, _, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
			})
			if err := op(c); err == nil {
				t.Error("want an error")
			}
		}
		if n := otherHits.Load(); n != 0 {
			t.Fatalf("the other origin received %d requests", n)
		}
	})
}

// walk lists the devices of n locations with 100 concurrent callers, as a
// device walk does, and returns the errors.
func walk(c *Client, n int) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = c.ListLocationDevices(context.Background(), fmt.Sprintf("loc-%d", i))
		})
	}
	wg.Wait()
	return errs
}

func TestFailingTokenEndpointIsAskedAtMostOnceASecond(t *testing.T) {
	var fetches atomic.Int64
	var failing atomic.Bool
	failing.Store(true)
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		if failing.Load() {
			writeJSON(w, 500, `{"error":"server_error"}`)
			return
		}
		writeJSON(w, 200, `{"access_token":"at-ok","token_type":"Bearer","expires_in":3600}`)
	}))
	t.Cleanup(tokenSrv.Close)
	clk := httpxtest.NewClock(time.Now())
	c, hits, _ := newTestClient(t, respond(200, `{"data":[]}`),
		WithClientCredentials(tokenSrv.URL+"/oauth2/token", testClientID, testClientSecret), withClock(clk.Now))

	// Twenty simulated seconds of walks of 100 locations, one every 200 ms.
	const locations, step, span = 100, 200 * time.Millisecond, 20 * time.Second
	for elapsed := time.Duration(0); elapsed < span; elapsed += step {
		for _, err := range walk(c, locations) {
			if err == nil || !strings.Contains(err.Error(), "HTTP 500") {
				t.Fatalf("want the token failure, got %v", err)
			}
		}
		if elapsed == 0 && fetches.Load() != 1 {
			t.Fatalf("first walk of %d locations fetched %d tokens, want 1", locations, fetches.Load())
		}
		clk.Advance(step)
	}
	t.Logf("%d token requests in %s of walks of %d locations", fetches.Load(), span, locations)
	if n, limit := fetches.Load(), int64(span/time.Second); n > limit {
		t.Fatalf("%d token requests in %s, want at most one a second (%d)", n, span, limit)
	}
	if n := fetches.Load(); n < 3 {
		t.Fatalf("only %d token requests in %s: the endpoint is no longer asked", n, span)
	}
	wantHits(t, hits.Load(), 0)

	// Once the endpoint is back, the next fetch after the backoff cures every caller.
	failing.Store(false)
	clk.Advance(httpx.GateMax * 2)
	for _, err := range walk(c, locations) {
		if err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	}
	wantHits(t, hits.Load(), locations)
}

func TestConstant429KeepsRequestsWithinTheBudget(t *testing.T) {
	const locations = 100
	rec := &recorder{}
	c, hits, _ := newTestClient(t, respond(429, `{"error_code":"ERRORS.RATE_LIMITED","status_code":429}`),
		WithRetry(4, time.Millisecond, 4*time.Millisecond), WithInstrumenter(rec))
	for range 3 {
		before := hits.Load()
		for _, err := range walk(c, locations) {
			var rl *RateLimitError
			var be *httpx.BackoffError
			if !errors.As(err, &rl) && !errors.As(err, &be) {
				t.Fatalf("want the 429 or a backoff refusal, got %v", err)
			}
		}
		t.Logf("walk of %d locations under constant 429: %d requests", locations, hits.Load()-before)
		if n := hits.Load() - before; n > locations*11/10 {
			t.Fatalf("a walk of %d locations under constant 429 sent %d requests, want at most %d", locations, n, locations*11/10)
		}
		time.Sleep(httpx.BudgetWindow / 10) // the next walk, a budget slot later
	}
	if b := rec.Backoffs(); len(b) == 0 || b[0] <= 0 {
		t.Fatalf("no client-wide backoff reported: %v", b)
	}
	if _, retries := rec.snapshot(); len(retries) > 3*locations/10+httpx.BudgetFloor {
		t.Fatalf("%d retries over three walks", len(retries))
	}
}

// hostileList is a device list with one device of each hostile kind and a
// well-behaved one.
func hostileList(t *testing.T, alias string) []byte {
	t.Helper()
	devs := []map[string]any{
		{"id": "ok-1", "alias": "Dock 1", "type": "BIKE_DOCK"},
		{"id": "huge-alias", "alias": alias, "code": strings.Repeat("C", 10_000), "comment": strings.Repeat("c ", 1<<15),
			"type": strings.Repeat("T", 100_000), "tags": make([]string, 1000)},
		{"id": strings.Repeat("i", 1<<20), "alias": "a 1 MB id"},
		{"id": strings.Repeat("i", limits.MaxIDBytes+1), "alias": "just over"},
		{"id": "nul-\x00-1", "alias": "an escaped NUL in the id"},
	}
	b, err := json.Marshal(map[string]any{"data": devs})
	if err != nil {
		t.Fatal(err)
	}
	// An id with invalid UTF-8, which json.Marshal would have repaired.
	return bytes.Replace(b, []byte(`{"data":[`), []byte("{\"data\":[{\"id\":\"utf8-d1\xff\xfe\xfd\"},"), 1)
}

func TestHostileStringsAreCappedAndBadIDsUndecodable(t *testing.T) {
	alias := strings.Repeat("A", 5<<20)
	body := hostileList(t, alias)
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rec := &recorder{}
	var posts atomic.Int64
	c, _, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
		}
		writeJSON(w, 200, string(body))
	}, WithInstrumenter(rec), WithLogger(logger), WithMaxBodyBytes(32<<20))

	devs, err := c.ListLocationDevices(context.Background(), "loc-1")
	pe := wantErrAs[*PartialDecodeError](t, err)
	if pe.Total != 6 || len(pe.Bad) != 4 || len(devs) != 2 {
		t.Fatalf("got %d devices, %d of %d bad: %v", len(devs), len(pe.Bad), pe.Total, err)
	}
	for _, d := range devs {
		if err := limits.ID(d.ID); err != nil {
			t.Errorf("device with unusable id %.40q returned", d.ID)
		}
		for _, s := range []string{d.Alias, d.Code, string(d.Type)} {
			if len(s) > limits.MaxNameBytes {
				t.Errorf("device %s: a %d-byte display string", d.ID, len(s))
			}
		}
		if len(d.Comment) > limits.MaxTextBytes || len(d.Tags) > maxTags {
			t.Errorf("device %s: %d-byte comment, %d tags", d.ID, len(d.Comment), len(d.Tags))
		}
	}
	if devs[1].ID != "huge-alias" || !strings.HasSuffix(devs[1].Alias, limits.Marker) {
		t.Errorf("alias not shortened with the marker: %.40q", devs[1].Alias)
	}
	if msg := err.Error(); len(msg) > 1024 || strings.Contains(msg, "\xff") || strings.Contains(msg, strings.Repeat("i", 200)) {
		t.Errorf("partial-decode error of %d bytes carries vendor ids: %.200q", len(msg), msg)
	}
	for _, field := range []string{"alias", "code", "comment", "type", "tags"} {
		if rec.Truncated(field) == 0 {
			t.Errorf("shortened %s not counted", field)
		}
	}

	// The device with the invalid id gets no command, nor anything else.
	for _, id := range []string{"utf8-d1\xff\xfe\xfd", strings.Repeat("i", limits.MaxIDBytes+1), "nul-\x00-1"} {
		if _, err := c.SendCommand(context.Background(), id, CommandRequest{Command: CmdSyncDevice}); err == nil {
			t.Errorf("command to %.20q sent", id)
		}
		if _, err := c.GetDevice(context.Background(), id); err == nil {
			t.Errorf("device %.20q fetched", id)
		}
	}
	if n := posts.Load(); n != 0 {
		t.Fatalf("%d commands reached the vendor", n)
	}
	for _, line := range bytes.Split(logs.Bytes(), []byte("\n")) {
		if len(line) > 16<<10 {
			t.Fatalf("log line of %d bytes: %.200s", len(line), line)
		}
	}
}

func TestEscapeIDRefusesWhatItWouldRewrite(t *testing.T) {
	for _, id := range []string{"", ".", "..", "d\xff", strings.Repeat("x", limits.MaxIDBytes+1)} {
		if _, err := escapeID("device", id); err == nil {
			t.Errorf("escapeID(%.20q) accepted", id)
		}
	}
	got, err := escapeID("device", "a/b c")
	if err != nil || got != url.PathEscape("a/b c") {
		t.Errorf("escapeID(\"a/b c\") = %q, %v", got, err)
	}
}
