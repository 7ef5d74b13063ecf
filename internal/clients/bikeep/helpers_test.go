package bikeep

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/httpx/httpxtest"
	"github.com/fleetd/fleetd/internal/secret"
)

const testStaticToken = "static-token-3b9f1c"

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newTestClient starts srv with h and returns a client with fast retries and
// a static token, plus the server's hit counter. extra options come last so
// they win.
func newTestClient(t *testing.T, h http.HandlerFunc, extra ...Option) (*Client, *atomic.Int64, *httptest.Server) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	opts := append([]Option{
		WithHTTPClient(srv.Client()),
		WithRetry(4, time.Millisecond, 5*time.Millisecond),
	}, extra...)
	if !hasAuth(extra) {
		opts = append(opts, WithStaticToken(secret.String(testStaticToken)))
	}
	c, err := NewClient(srv.URL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c, &hits, srv
}

// hasAuth reports whether opts configure authentication.
func hasAuth(opts []Option) bool {
	var cfg config
	for _, o := range opts {
		_ = o(&cfg)
	}
	return len(cfg.mkAuth) > 0
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

type observation struct {
	Route, Method string
	Code          int
}

// recorder is an Instrumenter that remembers what it saw.
type recorder struct {
	mu       sync.Mutex
	requests []observation
	retries  []observation
	httpxtest.Pauses
}

func (r *recorder) ObserveRequest(route, method string, code int, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = append(r.requests, observation{route, method, code})
}

func (r *recorder) ObserveRetry(route, method string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retries = append(r.retries, observation{Route: route, Method: method})
}

func (r *recorder) snapshot() (req, ret []observation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]observation(nil), r.requests...), append([]observation(nil), r.retries...)
}

// tokenServer is a fake OAuth2 token endpoint that hands out at-1, at-2, ...
type tokenServer struct {
	*httptest.Server
	fetches   atomic.Int64
	expiresIn int
	prefix    string // access tokens are prefix+n
	// forms records every request's form, for assertions.
	mu    sync.Mutex
	forms []map[string]string
	basic []bool
}

func newTokenServer(t *testing.T, clientID, clientSecret string, expiresIn int) *tokenServer {
	t.Helper()
	return newTokenServerPrefix(t, clientID, clientSecret, expiresIn, "at-")
}

func newTokenServerPrefix(t *testing.T, clientID, clientSecret string, expiresIn int, prefix string) *tokenServer {
	t.Helper()
	ts := &tokenServer{expiresIn: expiresIn, prefix: prefix}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		_, _, basic := r.BasicAuth()
		ts.mu.Lock()
		ts.forms = append(ts.forms, map[string]string{
			"grant_type":    r.PostForm.Get("grant_type"),
			"client_id":     r.PostForm.Get("client_id"),
			"client_secret": r.PostForm.Get("client_secret"),
		})
		ts.basic = append(ts.basic, basic)
		ts.mu.Unlock()
		if r.PostForm.Get("client_id") != clientID || r.PostForm.Get("client_secret") != clientSecret {
			// Echo the secret back: a hostile or buggy endpoint must not get
			// it into our error strings.
			writeJSON(w, http.StatusUnauthorized, `{"error":"invalid_client","error_description":"bad secret `+
				r.PostForm.Get("client_secret")+`"}`)
			return
		}
		n := ts.fetches.Add(1)
		writeJSON(w, http.StatusOK, `{"access_token":"`+ts.prefix+itoa(n)+`","token_type":"Bearer","expires_in":`+itoa(int64(ts.expiresIn))+`}`)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
