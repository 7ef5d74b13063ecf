package copri

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/httpx/httpxtest"
	"github.com/fleetd/fleetd/internal/secret"
)

const (
	testPassword  = "pw-Sup3r S3cret&!"
	fixtureCookie = "6103_7dc3c95028d06c9663378f6d44346de7_12345678"
)

// recorded is what the fake saw of one request.
type recorded struct {
	Request  string
	Method   string
	Path     string
	RawQuery string
	CType    string
	Form     url.Values
}

// fakeCopri is a COPRI server: it issues a new authcookie per login, serves
// the fixtures to holders of the current cookie and Failure to anyone else.
// override, when set, may take over any request.
type fakeCopri struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	calls    []recorded
	logins   int
	current  string
	issued   []string
	override func(w http.ResponseWriter, r *http.Request, req string, nth int) bool
}

func newFake(t *testing.T) *fakeCopri {
	f := &fakeCopri{t: t}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeCopri) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	req := r.PostForm.Get("request")
	f.mu.Lock()
	f.calls = append(f.calls, recorded{Request: req, Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
		CType: r.Header.Get("Content-Type"), Form: r.PostForm})
	nth := 0
	for _, c := range f.calls {
		if c.Request == req {
			nth++
		}
	}
	override := f.override
	f.mu.Unlock()
	if override != nil && override(w, r, req, nth) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch req {
	case "authorization":
		if r.PostForm.Get("user_pw") != testPassword || r.PostForm.Get("merchant_id") != "M-1" {
			fmt.Fprint(w, `{"shareejson":{"response":"authorization","response_state":"Failure 1002: authentication failed","response_text":"Benutzername oder Passwort falsch","authcookie":""}}`)
			return
		}
		f.logins++
		f.current = fmt.Sprintf("%s_%d", fixtureCookie, f.logins)
		f.issued = append(f.issued, f.current)
		w.Write(f.fixture("authorization.json"))
	case "user_bikes_occupied", "bikes_all":
		if r.PostForm.Get("authcookie") == "" || r.PostForm.Get("authcookie") != f.current {
			w.Write(readFixture(f.t, "failure.json"))
			return
		}
		w.Write(f.fixture(req + ".json"))
	case "authout":
		f.current = ""
		fmt.Fprint(w, `{"shareejson":{"response":"authout","response_state":"OK: logout","authcookie":""}}`)
	default:
		http.Error(w, "unknown request", http.StatusBadRequest)
	}
}

// fixture returns a testdata file with the current cookie; f.mu is held.
func (f *fakeCopri) fixture(name string) []byte {
	return bytes.ReplaceAll(readFixture(f.t, name), []byte(fixtureCookie), []byte(f.current))
}

func (f *fakeCopri) expire() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.current = "expired"
}

func (f *fakeCopri) count(req string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c.Request == req {
			n++
		}
	}
	return n
}

func (f *fakeCopri) setOverride(fn func(w http.ResponseWriter, r *http.Request, req string, nth int) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.override = fn
}

type recInstr struct {
	mu       sync.Mutex
	requests []string // "route method code"
	retries  []string
	httpxtest.Pauses
}

func (r *recInstr) ObserveRequest(route, method string, code int, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = append(r.requests, fmt.Sprintf("%s %s %d", route, method, code))
}

func (r *recInstr) ObserveRetry(route, method string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retries = append(r.retries, route+" "+method)
}

func testCreds() Credentials {
	return Credentials{MerchantID: "M-1", UserID: "ops@example.org", Password: secret.String(testPassword),
		HWID: "fleetd-test-0000000001", Lang: "en"}
}

func newTestClient(t *testing.T, f *fakeCopri, opts ...Option) *Client {
	t.Helper()
	opts = append([]Option{WithRetry(2, time.Millisecond, 5*time.Millisecond)}, opts...)
	c, err := NewClient(f.srv.URL+"/", f.srv.URL, testCreds(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewClientValidation(t *testing.T) {
	good := testCreds()
	tests := []struct {
		name     string
		primary  string
		operator string
		mod      func(*Credentials)
		want     string
	}{
		{"ok", "https://p.example", "", nil, ""},
		{"no scheme", "p.example", "", nil, "must be http or https"},
		{"userinfo", "https://u:hunter2@p.example", "", nil, "must not contain credentials"},
		{"bad operator", "https://p.example", "ftp://o.example", nil, "operator URL must be http or https"},
		{"query", "https://p.example/?request=x", "", nil, "query"},
		{"no password", "https://p.example", "", func(c *Credentials) { c.Password = "" }, "password is empty"},
		{"no merchant", "https://p.example", "", func(c *Credentials) { c.MerchantID = "" }, "merchant id"},
		{"short hw_id", "https://p.example", "", func(c *Credentials) { c.HWID = "short" }, "at least 16"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			creds := good
			if tc.mod != nil {
				tc.mod(&creds)
			}
			_, err := NewClient(tc.primary, tc.operator, creds)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), testPassword) {
				t.Fatalf("error leaks a secret: %v", err)
			}
		})
	}
}

func TestClientHappyPath(t *testing.T) {
	f := newFake(t)
	instr := &recInstr{}
	c := newTestClient(t, f, WithInstrumenter(instr))
	ctx := context.Background()
	if err := c.Login(ctx); err != nil {
		t.Fatal(err)
	}
	env, ok := c.Session()
	if !ok || env.CopriVersion != "4.1.8.21" || env.UserID != "ops@example.org" || !env.AuthCookie.IsZero() {
		t.Fatalf("session = %+v, %v", env, ok)
	}
	rentals, err := c.UserBikesOccupied(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rentals) != 2 || rentals[0].BookingID != "155896" || rentals[1].Bike != "FR1601" {
		t.Fatalf("rentals = %+v", rentals)
	}
	bikes, err := c.BikesAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bikes) != 3 || bikes[0].Bike != "FR1003" || bikes[2].Bike != "FR1601" {
		t.Fatalf("bikes = %+v", bikes)
	}
	if err := c.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Session(); ok {
		t.Error("session survives logout")
	}

	f.mu.Lock()
	calls := append([]recorded(nil), f.calls...)
	f.mu.Unlock()
	var names []string
	for _, call := range calls {
		names = append(names, call.Request)
		if call.Method != http.MethodPost || call.Path != "/APIjsonserver" || call.RawQuery != "" ||
			call.CType != "application/x-www-form-urlencoded" {
			t.Errorf("request %+v: want a form POST to /APIjsonserver without query", call)
		}
	}
	if got := strings.Join(names, ","); got != "authorization,user_bikes_occupied,bikes_all,authout" {
		t.Errorf("requests = %s", got)
	}
	login := calls[0].Form
	if login.Get("merchant_id") != "M-1" || login.Get("user_id") != "ops@example.org" ||
		login.Get("user_pw") != testPassword || login.Get("hw_id") != "fleetd-test-0000000001" || login.Get("lang") != "en" {
		t.Errorf("login form = %v", login)
	}
	for _, call := range calls[1:] {
		if call.Form.Get("authcookie") != fixtureCookie+"_1" {
			t.Errorf("%s sent authcookie %q", call.Request, call.Form.Get("authcookie"))
		}
	}
	wantObs := []string{"request=authorization POST 200", "request=user_bikes_occupied POST 200",
		"request=bikes_all POST 200", "request=authout POST 200"}
	if strings.Join(instr.requests, "|") != strings.Join(wantObs, "|") || len(instr.retries) != 0 {
		t.Errorf("instrumenter saw %v, retries %v", instr.requests, instr.retries)
	}
}

func TestSessionReuseAndRenewal(t *testing.T) {
	t.Run("one login for two calls", func(t *testing.T) {
		f := newFake(t)
		c := newTestClient(t, f)
		if err := c.Login(context.Background()); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, err := c.UserBikesOccupied(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if n := f.count("authorization"); n != 1 {
			t.Errorf("authorization requests = %d, want 1", n)
		}
	})
	t.Run("lazy login", func(t *testing.T) {
		f := newFake(t)
		c := newTestClient(t, f)
		if _, err := c.BikesAll(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := c.UserBikesOccupied(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := f.count("authorization"); n != 1 {
			t.Errorf("authorization requests = %d, want 1", n)
		}
	})
	t.Run("expired session: exactly one re-login", func(t *testing.T) {
		f := newFake(t)
		c := newTestClient(t, f)
		ctx := context.Background()
		if _, err := c.UserBikesOccupied(ctx); err != nil {
			t.Fatal(err)
		}
		f.expire()
		rentals, err := c.UserBikesOccupied(ctx)
		if err != nil || len(rentals) != 2 {
			t.Fatalf("after expiry: %v, %d rentals", err, len(rentals))
		}
		if _, err := c.UserBikesOccupied(ctx); err != nil {
			t.Fatal(err)
		}
		if n, d := f.count("authorization"), f.count("user_bikes_occupied"); n != 2 || d != 4 {
			t.Errorf("authorization = %d (want 2), data = %d (want 4)", n, d)
		}
	})
}

// nastyCase is one hostile server behaviour and the documented outcome.
type nastyCase struct {
	name     string
	opts     []Option
	timeout  time.Duration
	override func(w http.ResponseWriter, r *http.Request, req string, nth int) bool
	call     func(ctx context.Context, c *Client) error
	check    func(t *testing.T, f *fakeCopri, instr *recInstr, err error)
}

func rentalsCall(ctx context.Context, c *Client) error {
	_, err := c.UserBikesOccupied(ctx)
	return err
}
func bikesCall(ctx context.Context, c *Client) error { _, err := c.BikesAll(ctx); return err }
func loginCall(ctx context.Context, c *Client) error { return c.Login(ctx) }

// onData replaces the data response (not the login) with body.
func onData(status int, body string) func(w http.ResponseWriter, r *http.Request, req string, nth int) bool {
	return func(w http.ResponseWriter, r *http.Request, req string, nth int) bool {
		if req == "authorization" {
			return false
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
		return true
	}
}

func rentalBody(extra string) string {
	return `{"shareejson":{"response_state":"OK","authcookie":"` + fixtureCookie + `_1"},"bikes_occupied":{"155896":{"bike":"FR1540","K_u":"[1, 2, 3, 99, -99, 42, 17]"` + extra + `}}}`
}

func wantErr[E error](check func(t *testing.T, e E)) func(t *testing.T, f *fakeCopri, instr *recInstr, err error) {
	return func(t *testing.T, f *fakeCopri, instr *recInstr, err error) {
		t.Helper()
		var e E
		if !errors.As(err, &e) {
			t.Fatalf("err = %v (%T), want %T", err, err, e)
		}
		if check != nil {
			check(t, e)
		}
	}
}

func nastyCases() []nastyCase {
	htmlPage := "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
	return []nastyCase{
		{name: "truncated json", override: onData(200, rentalBody("")[:60]), call: rentalsCall,
			check: wantErr(func(t *testing.T, e *DecodeError) {
				if e.Field != "" || !strings.Contains(e.Error(), "unexpected end of JSON input") {
					t.Errorf("got %v", e)
				}
			})},
		{name: "wrong type", override: onData(200, rentalBody(`,"unit_price":{"eur":2}`)), call: rentalsCall,
			check: wantErr(func(t *testing.T, e *DecodeError) {
				if e.Field != "bikes_occupied[155896].unit_price" {
					t.Errorf("field %q", e.Field)
				}
			})},
		{name: "bad price", override: onData(200, rentalBody(`,"unit_price":"2,00"`)), call: rentalsCall,
			check: wantErr(func(t *testing.T, e *DecodeError) {
				if e.Field != "bikes_occupied[155896].unit_price" || !strings.Contains(e.Error(), `"2,00" is not a number`) {
					t.Errorf("got %v", e)
				}
			})},
		{name: "bad timestamp", override: onData(200, rentalBody(`,"end_time":"2021-10-28 25:61:00"`)), call: rentalsCall,
			check: wantErr(func(t *testing.T, e *DecodeError) {
				if e.Field != "bikes_occupied[155896].end_time" {
					t.Errorf("field %q", e.Field)
				}
			})},
		{name: "unknown states and null objects tolerated",
			override: onData(200, rentalBody(`,"state":"reserved-by-service","lock_state":"jammed","gps":null,"tariff_description":null`)),
			call: func(ctx context.Context, c *Client) error {
				rs, err := c.UserBikesOccupied(ctx)
				if err == nil && (len(rs) != 1 || rs[0].State.Known() || rs[0].LockState != "jammed" || rs[0].GPS != nil) {
					return fmt.Errorf("decoded %+v", rs)
				}
				return err
			},
			check: func(t *testing.T, _ *fakeCopri, _ *recInstr, err error) {
				if err != nil {
					t.Fatal(err)
				}
			}},
		{name: "html 502 page, retried then reported", override: onData(502, htmlPage), call: rentalsCall,
			check: func(t *testing.T, f *fakeCopri, instr *recInstr, err error) {
				wantErr(func(t *testing.T, e *APIError) {
					if e.StatusCode != 502 || e.Body != "502 Bad Gateway 502 Bad Gateway nginx" {
						t.Errorf("got %+v", e)
					}
				})(t, f, instr, err)
				if n := f.count("user_bikes_occupied"); n != 3 {
					t.Errorf("attempts = %d, want 3 (1 + 2 retries)", n)
				}
				if len(instr.retries) != 2 || instr.retries[0] != "request=user_bikes_occupied POST" {
					t.Errorf("retries observed: %v", instr.retries)
				}
			}},
		{name: "html page with status 200", override: onData(200, "<!DOCTYPE html><p>Wartungsarbeiten</p>"), call: rentalsCall,
			check: wantErr(func(t *testing.T, e *APIError) {
				if e.StatusCode != 200 || e.Body != "Wartungsarbeiten" {
					t.Errorf("got %+v", e)
				}
			})},
		{name: "500 with a json body carrying key material", override: onData(500, rentalBody("")), call: rentalsCall,
			check: wantErr(func(t *testing.T, e *APIError) {
				if e.StatusCode != 500 || e.Body != "OK" {
					t.Errorf("got %+v", e)
				}
			})},
		{name: "429 without retry-after, then success",
			override: func(w http.ResponseWriter, r *http.Request, req string, nth int) bool {
				if req == "user_bikes_occupied" && nth == 1 {
					w.WriteHeader(http.StatusTooManyRequests)
					return true
				}
				return false
			},
			call: rentalsCall,
			check: func(t *testing.T, f *fakeCopri, instr *recInstr, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if n := f.count("user_bikes_occupied"); n != 2 {
					t.Errorf("attempts = %d, want 2", n)
				}
			}},
		{name: "429 with retry-after honoured",
			override: func(w http.ResponseWriter, r *http.Request, req string, nth int) bool {
				if req == "user_bikes_occupied" && nth == 1 {
					w.Header().Set("Retry-After", "1")
					w.WriteHeader(http.StatusTooManyRequests)
					return true
				}
				return false
			},
			call: func(ctx context.Context, c *Client) error {
				start := time.Now()
				_, err := c.UserBikesOccupied(ctx)
				if err == nil && time.Since(start) < 900*time.Millisecond {
					return fmt.Errorf("retried after %v, before Retry-After", time.Since(start))
				}
				return err
			},
			check: func(t *testing.T, f *fakeCopri, _ *recInstr, err error) {
				if err != nil {
					t.Fatal(err)
				}
			}},
		{name: "429 with retry-after beyond what we wait",
			override: func(w http.ResponseWriter, r *http.Request, req string, nth int) bool {
				if req == "user_bikes_occupied" {
					w.Header().Set("Retry-After", "3600")
					w.WriteHeader(http.StatusTooManyRequests)
					return true
				}
				return false
			},
			call: rentalsCall,
			check: func(t *testing.T, f *fakeCopri, instr *recInstr, err error) {
				wantErr(func(t *testing.T, e *APIError) {
					if e.StatusCode != 429 {
						t.Errorf("got %+v", e)
					}
				})(t, f, instr, err)
				if n := f.count("user_bikes_occupied"); n != 1 {
					t.Errorf("attempts = %d, want 1", n)
				}
			}},
		{name: "hanging server, ctx deadline", timeout: 150 * time.Millisecond,
			override: func(w http.ResponseWriter, r *http.Request, req string, nth int) bool {
				if req == "authorization" {
					return false
				}
				<-r.Context().Done()
				return true
			},
			call: rentalsCall,
			check: func(t *testing.T, _ *fakeCopri, _ *recInstr, err error) {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err = %v, want deadline exceeded", err)
				}
			}},
		{name: "oversized body", opts: []Option{WithMaxBodyBytes(1024)},
			override: onData(200, rentalBody(`,"description":"`+strings.Repeat("x", 2000)+`"`)), call: rentalsCall,
			check: wantErr(func(t *testing.T, e *BodyTooLargeError) {
				if e.Limit != 1024 || e.Request != "user_bikes_occupied" {
					t.Errorf("got %+v", e)
				}
			})},
		{name: "oversized chunked body", opts: []Option{WithMaxBodyBytes(1024)},
			override: func(w http.ResponseWriter, r *http.Request, req string, nth int) bool {
				if req == "authorization" {
					return false
				}
				for range 40 {
					io.WriteString(w, strings.Repeat(" ", 100))
					w.(http.Flusher).Flush()
				}
				return true
			},
			call: rentalsCall,
			check: wantErr(func(t *testing.T, e *BodyTooLargeError) {
				if e.Limit != 1024 {
					t.Errorf("got %+v", e)
				}
			})},
		{name: "failure 1001: one re-login then FailureError",
			override: onData(200, `{"shareejson":{"response_state":"Failure 1001: authcookie not defined","response_text":"Sitzung abgelaufen","authcookie":""}}`),
			call: func(ctx context.Context, c *Client) error {
				if err := c.Login(ctx); err != nil {
					return err
				}
				return rentalsCall(ctx, c)
			},
			check: func(t *testing.T, f *fakeCopri, instr *recInstr, err error) {
				wantErr(func(t *testing.T, e *FailureError) {
					if e.Code() != 1001 || e.ResponseText != "Sitzung abgelaufen" || e.Request != "user_bikes_occupied" {
						t.Errorf("got %+v", e)
					}
				})(t, f, instr, err)
				if a, d := f.count("authorization"), f.count("user_bikes_occupied"); a != 2 || d != 2 {
					t.Errorf("authorization = %d (want 2), data = %d (want 2)", a, d)
				}
			}},
		{name: "empty authcookie on data: one re-login then AuthError",
			override: onData(200, `{"shareejson":{"response_state":"OK","authcookie":""},"bikes_occupied":{}}`),
			call: func(ctx context.Context, c *Client) error {
				if err := c.Login(ctx); err != nil {
					return err
				}
				return rentalsCall(ctx, c)
			},
			check: func(t *testing.T, f *fakeCopri, instr *recInstr, err error) {
				wantErr[*AuthError](nil)(t, f, instr, err)
				if a, d := f.count("authorization"), f.count("user_bikes_occupied"); a != 2 || d != 2 {
					t.Errorf("authorization = %d (want 2), data = %d (want 2)", a, d)
				}
			}},
		{name: "empty authcookie once: re-login heals",
			override: func(w http.ResponseWriter, r *http.Request, req string, nth int) bool {
				if req == "user_bikes_occupied" && nth == 1 {
					io.WriteString(w, `{"shareejson":{"response_state":"OK","authcookie":""},"bikes_occupied":{}}`)
					return true
				}
				return false
			},
			call: func(ctx context.Context, c *Client) error {
				if err := c.Login(ctx); err != nil {
					return err
				}
				rs, err := c.UserBikesOccupied(ctx)
				if err == nil && len(rs) != 2 {
					return fmt.Errorf("got %d rentals", len(rs))
				}
				return err
			},
			check: func(t *testing.T, f *fakeCopri, _ *recInstr, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if a := f.count("authorization"); a != 2 {
					t.Errorf("authorization = %d, want 2", a)
				}
			}},
		{name: "login refused", opts: []Option{}, call: func(ctx context.Context, c *Client) error {
			c.creds.MerchantID = "M-wrong"
			return rentalsCall(ctx, c)
		},
			check: func(t *testing.T, f *fakeCopri, instr *recInstr, err error) {
				wantErr(func(t *testing.T, e *AuthError) {
					if e.Request != "authorization" || e.ResponseState != "Failure 1002: authentication failed" ||
						e.ResponseText != "Benutzername oder Passwort falsch" {
						t.Errorf("got %+v", e)
					}
				})(t, f, instr, err)
				if d := f.count("user_bikes_occupied"); d != 0 {
					t.Errorf("data requests after refused login: %d", d)
				}
			}},
		{name: "login refused, server echoes the password",
			override: func(w http.ResponseWriter, r *http.Request, req string, nth int) bool {
				fmt.Fprintf(w, `{"shareejson":{"response_state":"Failure 1003: bad password %s","response_text":"you sent %s"}}`,
					r.PostForm.Get("user_pw"), r.PostForm.Get("user_pw"))
				return true
			},
			call: loginCall,
			check: wantErr(func(t *testing.T, e *AuthError) {
				if e.ResponseState != "Failure 1003: bad password <secret>" {
					t.Errorf("got %+v", e)
				}
			})},
		{name: "login without authcookie",
			override: func(w http.ResponseWriter, r *http.Request, req string, nth int) bool {
				io.WriteString(w, `{"shareejson":{"response_state":"OK","authcookie":""}}`)
				return true
			},
			call: loginCall,
			check: wantErr(func(t *testing.T, e *AuthError) {
				if !strings.Contains(e.Reason, "no authcookie") {
					t.Errorf("got %+v", e)
				}
			})},
		{name: "login 503 retried then ok",
			override: func(w http.ResponseWriter, r *http.Request, req string, nth int) bool {
				if req == "authorization" && nth == 1 {
					w.WriteHeader(http.StatusServiceUnavailable)
					return true
				}
				return false
			},
			call: loginCall,
			check: func(t *testing.T, f *fakeCopri, _ *recInstr, err error) {
				if err != nil || f.count("authorization") != 2 {
					t.Fatalf("err %v, attempts %d", err, f.count("authorization"))
				}
			}},
		{name: "bikes_all with php empty array", override: onData(200, `{"shareejson":{"response_state":"OK","authcookie":"x"},"bikes":[]}`),
			call: func(ctx context.Context, c *Client) error {
				bs, err := c.BikesAll(ctx)
				if err == nil && len(bs) != 0 {
					return fmt.Errorf("got %+v", bs)
				}
				return err
			},
			check: func(t *testing.T, _ *fakeCopri, _ *recInstr, err error) {
				if err != nil {
					t.Fatal(err)
				}
			}},
		{name: "bikes_all wrong type", override: onData(200, `{"shareejson":{"response_state":"OK","authcookie":"x"},"bikes":{"FR1":{"service_state":["0"]}}}`),
			call: bikesCall,
			check: wantErr(func(t *testing.T, e *DecodeError) {
				if e.Field != "bikes[FR1].service_state" {
					t.Errorf("got %+v", e)
				}
			})},
		{name: "redirect not followed",
			override: func(w http.ResponseWriter, r *http.Request, req string, nth int) bool {
				http.Redirect(w, r, "http://elsewhere.invalid/APIjsonserver", http.StatusTemporaryRedirect)
				return true
			},
			call: loginCall,
			check: wantErr(func(t *testing.T, e *APIError) {
				if e.StatusCode != http.StatusTemporaryRedirect {
					t.Errorf("got %+v", e)
				}
			})},
	}
}

// runNasty runs one case against a fresh fake and client.
func runNasty(t *testing.T, tc nastyCase, logger *slog.Logger) (*fakeCopri, error) {
	f := newFake(t)
	f.setOverride(tc.override)
	instr := &recInstr{}
	opts := append([]Option{WithInstrumenter(instr), WithLogger(logger)}, tc.opts...)
	c := newTestClient(t, f, opts...)
	timeout := tc.timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := tc.call(ctx, c)
	tc.check(t, f, instr, err)
	return f, err
}

func TestNastyServers(t *testing.T) {
	for _, tc := range nastyCases() {
		t.Run(tc.name, func(t *testing.T) {
			runNasty(t, tc, slog.New(slog.DiscardHandler))
		})
	}
}

func TestSecretsNeverLeak(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	forbidden := []string{testPassword, url.QueryEscape(testPassword), fixtureCookie}
	for _, fx := range []string{"user_bikes_occupied.json", "bikes_all.json"} {
		forbidden = append(forbidden, keyMaterial(t, readFixture(t, fx))...)
	}
	forbidden = append(forbidden, "1, 2, 3, 99, -99, 42, 17") // rentalBody's K_u

	var errs []string
	var fakes []*fakeCopri
	cases := append(nastyCases(), nastyCase{name: "happy path", call: func(ctx context.Context, c *Client) error {
		if _, err := c.UserBikesOccupied(ctx); err != nil {
			return err
		}
		if _, err := c.BikesAll(ctx); err != nil {
			return err
		}
		return c.Logout(ctx)
	}, check: func(t *testing.T, _ *fakeCopri, _ *recInstr, err error) {
		if err != nil {
			t.Fatal(err)
		}
	}})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := runNasty(t, tc, logger.With("case", tc.name))
			if err != nil {
				errs = append(errs, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
			}
			fakes = append(fakes, f)
		})
	}
	for _, f := range fakes {
		f.mu.Lock()
		forbidden = append(forbidden, f.issued...)
		for _, call := range f.calls {
			if call.RawQuery != "" {
				t.Errorf("request %s carried a URL query %q", call.Request, call.RawQuery)
			}
		}
		f.mu.Unlock()
	}
	if !strings.Contains(logs.String(), "copri") {
		t.Fatal("nothing was logged; the log check would prove nothing")
	}
	haystacks := append(errs, strings.Split(logs.String(), "\n")...)
	for _, h := range haystacks {
		for _, s := range forbidden {
			if s != "" && strings.Contains(h, s) {
				t.Errorf("secret %q leaked into %q", s, h)
			}
		}
	}
}

func TestBikesAllNeedsOperatorURL(t *testing.T) {
	f := newFake(t)
	c, err := NewClient(f.srv.URL, "", testCreds())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.BikesAll(context.Background()); err == nil || !strings.Contains(err.Error(), "no operator URL") {
		t.Fatalf("err = %v", err)
	}
	if n := f.count("authorization"); n != 0 {
		t.Errorf("logged in for nothing: %d", n)
	}
}

func TestConcurrentCallsShareOneLogin(t *testing.T) {
	f := newFake(t)
	c := newTestClient(t, f)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := c.UserBikesOccupied(context.Background())
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := f.count("authorization"); n != 1 {
		t.Errorf("authorization requests = %d, want 1", n)
	}
}
