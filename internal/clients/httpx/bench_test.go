package httpx

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkDo is the cost of one request through the retry engine: a
// success at once, and a 500 retried once, against a local server.
func BenchmarkDo(b *testing.B) {
	for _, bc := range []struct {
		name  string
		fails int // answers 500 before the 200
	}{{"success", 0}, {"one retry", 1}} {
		b.Run(bc.name, func(b *testing.B) {
			n := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				n++
				if n%(bc.fails+1) != 0 {
					w.WriteHeader(http.StatusInternalServerError)
				}
			}))
			defer srv.Close()
			var s Settings
			_ = s.SetHTTPClient(srv.Client())
			_ = s.SetRetry(2, 0, 0)
			c := New("bench", s, RetryAfterUpToMaxWait)
			// A budget that never runs out: the benchmark measures the loop.
			c.budget = NewBudget(1, 1<<30, time.Second, nil)
			r := Request{Method: http.MethodGet, Route: "/r", URL: srv.URL + "/r"}
			b.ReportAllocs()
			for b.Loop() {
				resp, _, err := c.Do(context.Background(), r)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
