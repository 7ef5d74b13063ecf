package httpx

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/httpx/httpxtest"
)

func newClock() *httpxtest.Clock {
	return httpxtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
}

func TestBudget(t *testing.T) {
	tests := []struct {
		name        string
		requests    int
		wantRetries int
	}{
		{"a quiet client keeps the floor", 1, BudgetFloor},
		{"ten percent of a busy one", 100, 10},
		{"floor wins below thirty requests", 20, BudgetFloor},
		{"a thousand requests", 1000, 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			b := NewBudget(BudgetRatio, BudgetFloor, BudgetWindow, clk.Now)
			for range tc.requests {
				b.Request()
			}
			got := 0
			for b.Retry() {
				got++
				if got > 10*tc.requests+10 {
					t.Fatal("budget never runs out")
				}
			}
			if got != tc.wantRetries {
				t.Errorf("retries allowed = %d, want %d", got, tc.wantRetries)
			}
		})
	}
	t.Run("refills once the window has passed", func(t *testing.T) {
		clk := newClock()
		b := NewBudget(BudgetRatio, BudgetFloor, BudgetWindow, clk.Now)
		for b.Retry() {
		}
		clk.Advance(BudgetWindow / 2)
		if b.Retry() {
			t.Fatal("retry allowed within the window after the budget was spent")
		}
		clk.Advance(BudgetWindow/2 + time.Millisecond)
		if !b.Retry() {
			t.Fatal("no retry allowed a whole window later")
		}
	})
}

func TestThrottle(t *testing.T) {
	clk := newClock()
	rec := &backoffRec{}
	th := newThrottle(time.Second, 8*time.Second, rec)
	th.now = clk.Now
	th.Throttled(0, false)
	first := th.Remaining()
	if first < 500*time.Millisecond || first > time.Second {
		t.Fatalf("first pause %s, want within [0.5s, 1s]", first)
	}
	// Every worker that got the same 429 reports it: one step per pause.
	for range 50 {
		th.Throttled(0, false)
	}
	if th.Remaining() != first {
		t.Fatalf("pause grew while paused: %s", th.Remaining())
	}
	clk.Advance(first)
	th.Throttled(0, false)
	if d := th.Remaining(); d < time.Second || d > 2*time.Second {
		t.Fatalf("second pause %s, want within [1s, 2s]", d)
	}
	clk.Advance(time.Minute)
	th.Throttled(30*time.Second, true)
	if d := th.Remaining(); d != 30*time.Second {
		t.Fatalf("pause after Retry-After %s, want 30s", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := th.Wait(ctx)
	var be *BackoffError
	if !errors.As(err, &be) || !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("Wait past the deadline = %v after %s; want an immediate BackoffError", err, time.Since(start))
	}
	th.Succeeded()
	if got := rec.last(); got != 30*time.Second {
		t.Fatalf("gauge %s while the pause still holds", got)
	}
	clk.Advance(time.Minute)
	th.Throttled(0, false)
	if d := th.Remaining(); d > time.Second {
		t.Fatalf("pause after a success started at %s, want the minimum again", d)
	}
}

type backoffRec struct {
	Nop
	httpxtest.Pauses
}

// ObserveBackoff and ObserveTruncated come from Pauses, not Nop.
func (r *backoffRec) ObserveBackoff(d time.Duration) { r.Pauses.ObserveBackoff(d) }
func (r *backoffRec) ObserveTruncated(f string)      { r.Pauses.ObserveTruncated(f) }

func (r *backoffRec) last() time.Duration {
	ds := r.Backoffs()
	if len(ds) == 0 {
		return -1
	}
	return ds[len(ds)-1]
}

func TestGate(t *testing.T) {
	clk := newClock()
	g := NewGate("token fetch", time.Second, 4*time.Second, clk.Now)
	ctx := context.Background()
	var fetches atomic.Int64
	boom := errors.New("endpoint answered HTTP 500")
	fetch := func() error {
		leave, err := g.Enter(ctx)
		if err != nil {
			return err
		}
		defer leave()
		if err := g.Shut(); err != nil {
			return err
		}
		fetches.Add(1)
		g.Done(ctx, boom)
		return boom
	}
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if err := fetch(); !errors.Is(err, boom) {
				t.Errorf("caller got %v, want the fetch's failure", err)
			}
		})
	}
	wg.Wait()
	if n := fetches.Load(); n != 1 {
		t.Fatalf("100 callers made %d fetches, want 1", n)
	}
	// Backoffs double (with upward jitter) and never exceed 1.5 × max.
	for i, min := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		clk.Advance(min - time.Millisecond)
		_ = fetch()
		if fetches.Load() != int64(i+1) {
			t.Fatalf("fetch %d came %s after the failure, before its backoff", i+2, min-time.Millisecond)
		}
		clk.Advance(min/2 + time.Millisecond)
		_ = fetch()
		if fetches.Load() != int64(i+2) {
			t.Fatalf("no fetch %s after failure %d", min+min/2, i+1)
		}
	}
	t.Run("the caller's own deadline starts no backoff", func(t *testing.T) {
		g := NewGate("login", time.Second, time.Minute, clk.Now)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		g.Done(cctx, context.Canceled)
		if err := g.Shut(); err != nil {
			t.Fatalf("gate shut after a cancelled caller: %v", err)
		}
	})
}

func TestSanitize(t *testing.T) {
	tests := []struct {
		name, in string
		max      int
		secrets  []string
		want     string
	}{
		{"control and space runs", "a\r\n\tb  \x00c", 64, nil, "a b c"},
		{"invalid UTF-8 dropped", "x\xff\xfey", 64, nil, "x y"},
		{"secret masked", "bad secret s3cr3t!", 64, []string{"s3cr3t"}, "bad secret <secret>!"},
		{"shortened with a marker", strings.Repeat("ab", 100), 10, nil, "abababa…"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Sanitize(tc.in, tc.max, tc.secrets...); got != tc.want || len(got) > tc.max {
				t.Errorf("Sanitize = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSettingsRefuseBadValues(t *testing.T) {
	var s Settings
	for name, err := range map[string]error{
		"nil client":       s.SetHTTPClient(nil),
		"nil instrumenter": s.SetInstrumenter(nil),
		"nil logger":       s.SetLogger(nil),
		"zero body cap":    s.SetMaxBodyBytes(0),
		"zero attempts":    s.SetRetry(0, 0, 0),
		"max below min":    s.SetRetry(2, time.Second, time.Millisecond),
		"negative wait":    s.SetRetry(2, -time.Second, time.Second),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestConstant429 is the client under a vendor that throttles every request
// and sends no Retry-After: with 100 requests from 8 workers, the retries
// stay within the budget and the client-wide pause is set.
func TestConstant429(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	rec := &backoffRec{}
	var s Settings
	_ = s.SetHTTPClient(srv.Client())
	_ = s.SetInstrumenter(rec)
	_ = s.SetRetry(4, time.Millisecond, 4*time.Millisecond)
	c := New("test", s, MaxRetryAfter)
	const requests = 100
	work := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range work {
				resp, _, err := c.Do(context.Background(), Request{Method: http.MethodGet, Route: "/r", URL: srv.URL})
				if err != nil {
					t.Error(err)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusTooManyRequests {
					t.Errorf("status %d", resp.StatusCode)
				}
			}
		})
	}
	for i := range requests {
		work <- i
	}
	close(work)
	wg.Wait()
	if n := hits.Load(); n > requests*11/10 {
		t.Errorf("%d requests reached the vendor for %d calls, want at most %d", n, requests, requests*11/10)
	}
	if rec.last() <= 0 {
		t.Errorf("no client-wide backoff reported: %v", rec.Backoffs())
	}
}

func TestRefuseRedirectNamesOnlyTheHost(t *testing.T) {
	req := httptest.NewRequest(http.MethodPost, "http://evil.example:8443/steal?client_secret=x", nil)
	err := RefuseRedirect(req, nil)
	if err == nil || !strings.Contains(err.Error(), "redirect refused") || !strings.Contains(err.Error(), "evil.example:8443") ||
		strings.Contains(err.Error(), "steal") || strings.Contains(err.Error(), "client_secret") {
		t.Fatalf("error %v", err)
	}
}

func TestRetryAfterCap(t *testing.T) {
	tests := []struct {
		name  string
		s     func() Settings
		raCap time.Duration
		want  time.Duration
	}{
		{"defaults: up to the default retry maximum", func() Settings { return Settings{} }, RetryAfterUpToMaxWait, DefaultMaxWait},
		{"up to a configured retry maximum", func() Settings {
			var s Settings
			_ = s.SetRetry(3, time.Millisecond, 3*time.Second)
			return s
		}, RetryAfterUpToMaxWait, 3 * time.Second},
		{"a fixed cap", func() Settings { return Settings{} }, 30 * time.Second, 30 * time.Second},
		{"never beyond MaxRetryAfter", func() Settings { return Settings{} }, time.Hour, MaxRetryAfter},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if c := New("test", tc.s(), tc.raCap); c.raCap != tc.want {
				t.Errorf("cap = %s, want %s", c.raCap, tc.want)
			}
		})
	}
	t.Run("a 429 with Retry-After pauses the client for it", func(t *testing.T) {
		c := New("test", Settings{}, RetryAfterUpToMaxWait)
		resp := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"2"}}}
		if !c.judge(Request{Route: "/r"}, resp) {
			t.Fatal("not retried")
		}
		if d := c.throttle.Remaining(); d < time.Second || d > 2*time.Second {
			t.Fatalf("pause %s, want about 2s", d)
		}
	})
}

func TestThrottleWaitHonoursAPauseExtendedMeanwhile(t *testing.T) {
	th := newThrottle(time.Millisecond, time.Second, Nop{})
	th.Throttled(50*time.Millisecond, true)
	start := time.Now()
	go func() {
		time.Sleep(20 * time.Millisecond)
		th.Throttled(150*time.Millisecond, true)
	}()
	if err := th.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 160*time.Millisecond {
		t.Fatalf("woke after %s, before the extended pause (170 ms) was over", waited)
	}
}

// TestDo is the retry policy the engine applies, request by request: what
// is retried, how often, what the caller gets back and whether it may have
// been sent.
func TestDo(t *testing.T) {
	tests := []struct {
		name       string
		policy     Policy
		method     string
		statuses   []int // answers in order; the last repeats
		header     http.Header
		wantHits   int64
		wantStatus int
		wantSent   bool
	}{
		{"a 5xx is retried until it passes", RetryIdempotent, http.MethodGet, []int{500, 502, 200}, nil, 3, 200, true},
		{"the last 5xx is handed back, not an error", RetryIdempotent, http.MethodGet, []int{503}, nil, 3, 503, true},
		{"a 501 is final", RetryIdempotent, http.MethodGet, []int{501}, nil, 1, 501, true},
		{"a 4xx is final", RetryIdempotent, http.MethodGet, []int{404}, nil, 1, 404, true},
		{"a 429 is retried after the shared pause", RetryIdempotent, http.MethodGet, []int{429, 200}, nil, 2, 200, true},
		{"a Retry-After beyond the maximum is reported, not waited",
			RetryIdempotent, http.MethodGet, []int{429}, http.Header{"Retry-After": {"3600"}}, 1, 429, true},
		{"a redirect is handed back, not followed", RetryIdempotent, http.MethodGet, []int{302}, http.Header{"Location": {"/elsewhere"}}, 1, 302, true},
		{"a command that reached the server is not retried after a 5xx", RetryUnsent, http.MethodPost, []int{500, 200}, nil, 1, 500, true},
		{"a command is not retried after a 429", RetryUnsent, http.MethodPost, []int{429, 200}, nil, 1, 429, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hits atomic.Int64
			var bodies sync.Map
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := hits.Add(1)
				if r.URL.Path != "/r" {
					t.Errorf("request to %s: a redirect was followed", r.URL.Path)
				}
				b := make([]byte, 64)
				k, _ := r.Body.Read(b)
				bodies.Store(n, string(b[:k]))
				for k, v := range tc.header {
					w.Header()[k] = v
				}
				w.WriteHeader(tc.statuses[min(int(n), len(tc.statuses))-1])
			}))
			defer srv.Close()
			var s Settings
			_ = s.SetHTTPClient(srv.Client())
			_ = s.SetRetry(3, time.Millisecond, 2*time.Millisecond)
			c := New("test", s, RetryAfterUpToMaxWait)
			var body []byte
			if tc.method == http.MethodPost {
				body = []byte(`{"command":"sync-device"}`)
			}
			resp, sent, err := c.Do(context.Background(), Request{Method: tc.method, Route: "/r", URL: srv.URL + "/r", Body: body, Policy: tc.policy})
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus || sent != tc.wantSent || hits.Load() != tc.wantHits {
				t.Fatalf("status %d, sent %v after %d requests; want %d, %v after %d",
					resp.StatusCode, sent, hits.Load(), tc.wantStatus, tc.wantSent, tc.wantHits)
			}
			bodies.Range(func(k, v any) bool {
				if v != string(body) {
					t.Errorf("attempt %v carried body %q, want %q", k, v, body)
				}
				return true
			})
		})
	}
}

// TestDoTransportErrors: a request that never left (nothing listens) may be
// retried even when it is a command; errors name no URL.
func TestDoTransportErrors(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/secret-path/r"
	srv.Close() // nothing listens there now: every dial is refused
	for _, policy := range []Policy{RetryIdempotent, RetryUnsent} {
		var s Settings
		rec := &retryRec{}
		_ = s.SetInstrumenter(rec)
		_ = s.SetRetry(3, time.Millisecond, 2*time.Millisecond)
		c := New("test", s, RetryAfterUpToMaxWait)
		resp, sent, err := c.Do(context.Background(), Request{Method: http.MethodPost, Route: "/r", URL: url, Body: []byte("x"), Policy: policy})
		if resp != nil || err == nil {
			t.Fatalf("policy %d: resp %v, err %v; want an error", policy, resp, err)
		}
		if strings.Contains(err.Error(), "secret-path") {
			t.Errorf("policy %d: error names the URL: %v", policy, err)
		}
		if policy == RetryUnsent && sent {
			t.Errorf("a refused dial reported as maybe sent")
		}
		if n := rec.retries.Load(); n != 2 {
			t.Errorf("policy %d: %d retries, want 2", policy, n)
		}
	}
}

type retryRec struct {
	Nop
	retries atomic.Int64
}

func (r *retryRec) ObserveRetry(string, string) { r.retries.Add(1) }

// TestDoCommandAfterConnectionIsNotRetried: once the connection is in hand a
// command may have been written, so a failure then is not retried.
func TestDoCommandAfterConnectionIsNotRetried(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		hj, _ := w.(http.Hijacker)
		conn, _, _ := hj.Hijack()
		conn.Close() // the request arrived; the answer never does
	}))
	defer srv.Close()
	for _, tc := range []struct {
		policy   Policy
		wantHits int64
	}{{RetryUnsent, 1}, {RetryIdempotent, 3}} {
		hits.Store(0)
		var s Settings
		_ = s.SetHTTPClient(srv.Client())
		_ = s.SetRetry(3, time.Millisecond, 2*time.Millisecond)
		c := New("test", s, RetryAfterUpToMaxWait)
		_, sent, err := c.Do(context.Background(), Request{Method: http.MethodPost, Route: "/r", URL: srv.URL, Body: []byte("x"), Policy: tc.policy})
		if err == nil || !sent || hits.Load() != tc.wantHits {
			t.Errorf("policy %d: err %v, sent %v, %d requests; want an error, sent, %d requests", tc.policy, err, sent, hits.Load(), tc.wantHits)
		}
	}
}

// TestThrottleGaugeReturnsToZero: fleetd_api_backoff_seconds goes back to 0
// with the first answer that is not throttled after the pause, also when the
// pause came from a Retry-After or a success arrived during it (an alert
// watches the gauge).
func TestThrottleGaugeReturnsToZero(t *testing.T) {
	tests := []struct {
		name  string
		ra    time.Duration
		hasRA bool
	}{
		{"pause after a 429 without Retry-After", 0, false},
		{"pause after a Retry-After", 5 * time.Second, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			rec := &backoffRec{}
			th := newThrottle(time.Second, 8*time.Second, rec)
			th.now = clk.Now
			th.Throttled(tc.ra, tc.hasRA)
			th.Succeeded() // an answer to a request sent before the 429
			if rec.last() <= 0 {
				t.Fatalf("gauge %s during the pause", rec.last())
			}
			clk.Advance(10 * time.Second)
			th.Succeeded()
			if got := rec.last(); got != 0 {
				t.Fatalf("gauge %s after a success past the pause, want 0", got)
			}
			n := len(rec.Backoffs())
			th.Succeeded()
			if len(rec.Backoffs()) != n {
				t.Fatal("every success reports the gauge again")
			}
		})
	}
}

// TestFailedRequestKeepsThePool: a request that ends in an error (here its
// deadline during the backoff) does not close the connections the client's
// other requests reuse.
func TestFailedRequestKeepsThePool(t *testing.T) {
	var conns atomic.Int64
	answered := make(chan struct{}, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
			answered <- struct{}{}
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	var s Settings
	_ = s.SetHTTPClient(srv.Client())
	_ = s.SetRetry(2, time.Minute, time.Minute)
	c := New("test", s, RetryAfterUpToMaxWait)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-answered
		time.Sleep(50 * time.Millisecond) // the answer drained, the backoff begun
		cancel()
	}()
	if _, _, err := c.Do(ctx, Request{Method: http.MethodGet, Route: "/fail", URL: srv.URL + "/fail"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Do = %v, want the cancellation", err)
	}
	resp, _, err := c.Do(context.Background(), Request{Method: http.MethodGet, Route: "/ok", URL: srv.URL + "/ok"})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for two requests in a row, want the first one reused", n)
	}
}
