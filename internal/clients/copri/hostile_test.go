package copri

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/httpx"
	"github.com/fleetd/fleetd/internal/clients/limits"
)

// TestFailingLoginIsNotHammered is COPRI answering every login with a 500:
// twenty concurrent walks share one login (with the retries its budget
// allows), and the walks after it fail fast with that error while the
// backoff lasts instead of each logging in again.
func TestFailingLoginIsNotHammered(t *testing.T) {
	f := newFake(t)
	f.setOverride(func(w http.ResponseWriter, _ *http.Request, req string, _ int) bool {
		if req == reqAuthorization {
			w.WriteHeader(http.StatusInternalServerError)
			return true
		}
		return false
	})
	c := newTestClient(t, f, WithRetry(3, time.Millisecond, 2*time.Millisecond))
	for walk := range 10 {
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				_, err := c.UserBikesOccupied(context.Background())
				var ae *APIError
				if !errors.As(err, &ae) || ae.StatusCode != 500 {
					t.Errorf("walk %d: want the login's HTTP 500, got %v", walk, err)
				}
			})
		}
		wg.Wait()
	}
	// One login of 1 + 3 attempts (the budget's floor), then the backoff.
	if n := f.count(reqAuthorization); n > 1+httpx.BudgetFloor {
		t.Fatalf("%d login POSTs for 10 walks of 20 callers, want at most %d", n, 1+httpx.BudgetFloor)
	}
	if n := f.count(reqUserBikesOccupied); n != 0 {
		t.Fatalf("%d data requests without a session", n)
	}
	_, err := c.UserBikesOccupied(context.Background())
	var be *httpx.BackoffError
	if !errors.As(err, &be) || !strings.Contains(err.Error(), "login not retried for another") {
		t.Fatalf("want a backoff refusal naming the login, got %v", err)
	}
}

func TestConcurrentCallersShareOneLogin(t *testing.T) {
	f := newFake(t)
	c := newTestClient(t, f)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := c.UserBikesOccupied(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := f.count(reqAuthorization); n != 1 {
		t.Fatalf("%d logins for 50 concurrent callers, want 1", n)
	}
}

func TestOptionsRefuseBadValues(t *testing.T) {
	for name, opt := range map[string]Option{
		"nil http client":    WithHTTPClient(nil),
		"zero body cap":      WithMaxBodyBytes(0),
		"negative body cap":  WithMaxBodyBytes(-1),
		"nil instrumenter":   WithInstrumenter(nil),
		"nil logger":         WithLogger(nil),
		"nil time zone":      WithTimeZone(nil),
		"negative retries":   WithRetry(-1, time.Millisecond, time.Second),
		"max wait below min": WithRetry(2, time.Second, time.Millisecond),
		"negative min wait":  WithRetry(2, -time.Second, time.Second),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := NewClient("https://p.example", "", testCreds(), opt); err == nil {
				t.Error("want an error")
			}
		})
	}
}

// TestHostileRentalStrings sends a rental whose description is 5 MB and
// whose bike id is not valid UTF-8: the first is shortened and counted, the
// second refuses the response, and no log line grows past 16 KB.
func TestHostileRentalStrings(t *testing.T) {
	huge := strings.Repeat("D", 5<<20)
	tests := []struct {
		name  string
		extra string
		check func(t *testing.T, rs []Rental, err error, instr *recInstr)
	}{
		{"5 MB description", `,"description":"` + huge + `","system":"` + huge[:4096] + `"`,
			func(t *testing.T, rs []Rental, err error, instr *recInstr) {
				if err != nil {
					t.Fatal(err)
				}
				if len(rs) != 1 || len(rs[0].Description) > limits.MaxTextBytes || len(rs[0].System) > limits.MaxNameBytes {
					t.Fatalf("got %d rentals, description %d bytes, system %d bytes", len(rs), len(rs[0].Description), len(rs[0].System))
				}
				if instr.Truncated("description") != 1 || instr.Truncated("system") != 1 {
					t.Errorf("truncations counted: description %d, system %d", instr.Truncated("description"), instr.Truncated("system"))
				}
			}},
		{"bike id with invalid UTF-8", ",\"bike\":\"FR\xff\xfe1\"",
			func(t *testing.T, _ []Rental, err error, _ *recInstr) {
				var de *DecodeError
				if !errors.As(err, &de) || !strings.HasSuffix(de.Field, ".bike") {
					t.Fatalf("want a DecodeError on bike, got %v", err)
				}
			}},
		{"1 MB station id", `,"station":"` + huge[:1<<20] + `"`,
			func(t *testing.T, _ []Rental, err error, _ *recInstr) {
				var de *DecodeError
				if !errors.As(err, &de) || !strings.HasSuffix(de.Field, ".station") || len(err.Error()) > 1024 {
					t.Fatalf("want a short DecodeError on station, got %.300v", err)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.setOverride(onData(200, rentalBody(tc.extra)))
			var logs strings.Builder
			logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			instr := &recInstr{}
			c := newTestClient(t, f, WithInstrumenter(instr), WithLogger(logger), WithMaxBodyBytes(16<<20))
			rs, err := c.UserBikesOccupied(context.Background())
			tc.check(t, rs, err, instr)
			for _, line := range strings.Split(logs.String(), "\n") {
				if len(line) > 16<<10 {
					t.Fatalf("log line of %d bytes", len(line))
				}
			}
		})
	}
}
