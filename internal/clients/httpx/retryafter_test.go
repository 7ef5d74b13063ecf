package httpx

import (
	"net/http"
	"testing"
	"time"
)

// Moved from the bikeep client, whose backoff and Retry-After parsing these are now.
func TestBackoff(t *testing.T) {
	withRA := func(status int, ra string) *http.Response {
		h := http.Header{}
		if ra != "" {
			h.Set("Retry-After", ra)
		}
		return &http.Response{StatusCode: status, Header: h}
	}
	tests := []struct {
		name     string
		attempt  int
		resp     *http.Response
		min, max time.Duration
	}{
		{"first retry", 0, nil, 50 * time.Millisecond, 100 * time.Millisecond},
		{"fourth retry", 3, withRA(500, ""), 400 * time.Millisecond, 800 * time.Millisecond},
		{"capped", 20, nil, 5 * time.Second, 10 * time.Second},
		{"Retry-After honoured", 0, withRA(429, "3"), 3 * time.Second, 3 * time.Second},
		{"Retry-After capped", 0, withRA(429, "3600"), 10 * time.Second, 10 * time.Second},
		{"Retry-After on 503", 1, withRA(503, "2"), 2 * time.Second, 2 * time.Second},
		{"Retry-After ignored on 500", 0, withRA(500, "3"), 50 * time.Millisecond, 100 * time.Millisecond},
		{"garbage Retry-After", 0, withRA(429, "soon"), 50 * time.Millisecond, 100 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for range 50 {
				d := Backoff(100*time.Millisecond, 10*time.Second, tc.attempt, tc.resp)
				if d < tc.min || d > tc.max {
					t.Fatalf("backoff = %s, want [%s, %s]", d, tc.min, tc.max)
				}
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 15, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"120", 120 * time.Second, true},
		{" 5 ", 5 * time.Second, true},
		{"-1", 0, false},
		{"99999999999999", 24 * time.Hour, true},
		{"Wed, 15 Jan 2025 12:01:30 GMT", 90 * time.Second, true},
		{"Wed, 15 Jan 2025 11:00:00 GMT", 0, true},
		{"Wednesday, 15-Jan-25 12:00:10 GMT", 10 * time.Second, true},
		{"in a while", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := ParseRetryAfter(tc.in, now)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("parseRetryAfter(%q) = %s, %v; want %s, %v", tc.in, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}
