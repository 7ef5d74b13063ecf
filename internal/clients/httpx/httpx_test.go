package httpx

import (
	"context"
	"errors"
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
		if retry, _ := c.judge(Request{Route: "/r"}, resp, 0); !retry {
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
