package bikeep

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/fleetd/fleetd/internal/clients/httpx"
	"github.com/fleetd/fleetd/internal/secret"
)

// tokenSource supplies bearer tokens. Implementations are safe for
// concurrent use.
type tokenSource interface {
	token(ctx context.Context) (string, error)
	// invalidate drops the cached token if it is still stale (a 401 came
	// back for it) and reports whether asking again may yield another one.
	invalidate(stale string) bool
}

// earlyExpiry is how long before its stated expiry a client-credentials
// token is replaced, so that a request never leaves with a token that dies
// in flight.
const earlyExpiry = time.Minute

// ccSource fetches OAuth2 client-credentials tokens and caches them until
// shortly before they expire. It is a ReuseTokenSourceWithExpiry that also
// takes the request's context, can be invalidated after a 401, and fetches
// through a gate: one fetch at a time for all callers, and after a failure
// a backoff during which callers get that failure at once.
type ccSource struct {
	cfg  *clientcredentials.Config
	hc   *http.Client
	now  func() time.Time
	log  logFunc
	gate *httpx.Gate

	mu      sync.Mutex
	tok     string
	renewAt time.Time // zero: no expiry given, keep until a 401
}

type logFunc func(ctx context.Context, msg string, args ...any)

// tokenHTTPClient is a copy of hc that follows no redirect: the token
// request carries the client secret, which must reach no other origin.
func tokenHTTPClient(hc *http.Client) *http.Client {
	cp := &http.Client{}
	if hc != nil {
		*cp = *hc
	}
	cp.CheckRedirect = httpx.RefuseRedirect
	return cp
}

// cached returns the token while it is fresh.
func (s *ccSource) cached() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := s.tok != "" && (s.renewAt.IsZero() || s.now().Before(s.renewAt))
	return s.tok, ok
}

func (s *ccSource) token(ctx context.Context) (string, error) {
	if t, ok := s.cached(); ok {
		return t, nil
	}
	leave, err := s.gate.Enter(ctx)
	if err != nil {
		return "", err
	}
	defer leave()
	if t, ok := s.cached(); ok {
		return t, nil // fetched by the caller we waited for
	}
	if err := s.gate.Shut(); err != nil {
		return "", err
	}
	t, err := s.fetch(ctx)
	s.gate.Done(ctx, err)
	return t, err
}

func (s *ccSource) fetch(ctx context.Context) (string, error) {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.hc)
	t, err := s.cfg.Token(ctx)
	if err != nil {
		return "", fmt.Errorf("fetch token: %w", sanitizeTokenError(err))
	}
	if t.AccessToken == "" {
		return "", errors.New("fetch token: empty access_token")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tok = t.AccessToken
	s.renewAt = time.Time{}
	if !t.Expiry.IsZero() {
		// oauth2 computed Expiry with the wall clock; turn it into a lifetime
		// so the (test-injectable) clock decides renewal. Short-lived tokens
		// renew at 3/4 of their life rather than on every call.
		life := time.Until(t.Expiry)
		margin := min(earlyExpiry, life/4)
		s.renewAt = s.now().Add(life - margin)
	}
	s.log(ctx, "bikeep: fetched access token", "renew_in", s.renewAt.Sub(s.now()).Round(time.Second))
	return s.tok, nil
}

func (s *ccSource) invalidate(stale string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok == stale {
		s.tok = ""
	}
	return true
}

// sanitizeTokenError keeps the token endpoint's status and OAuth2 error
// code but drops its response body (which could echo credentials) and the
// endpoint URL.
func sanitizeTokenError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		if re.ErrorCode != "" {
			return fmt.Errorf("token endpoint answered HTTP %d %s", status, httpx.Sanitize(re.ErrorCode, 64))
		}
		return fmt.Errorf("token endpoint answered HTTP %d", status)
	}
	return httpx.StripURL(err)
}

// staticSource always returns the same token; a 401 cannot be cured.
type staticSource struct{ tok secret.String }

func (s staticSource) token(context.Context) (string, error) { return s.tok.Reveal(), nil }
func (s staticSource) invalidate(string) bool                { return false }

// fileSource reads the token from a file and re-reads it when the file's
// modification time or size changes, so an externally rotated token is
// picked up without a restart.
type fileSource struct {
	path string

	mu    sync.Mutex
	tok   string
	mtime time.Time
	size  int64
	force bool
}

// maxTokenFile bounds what is read from a token file.
const maxTokenFile = 64 << 10

func (s *fileSource) token(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fi, err := os.Stat(s.path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	if s.tok != "" && !s.force && fi.ModTime().Equal(s.mtime) && fi.Size() == s.size {
		return s.tok, nil
	}
	f, err := os.Open(s.path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile))
	if err != nil {
		return "", fmt.Errorf("token file %s: read: %w", s.path, err)
	}
	tok := string(bytes.TrimSpace(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", s.path)
	}
	s.tok, s.mtime, s.size, s.force = tok, fi.ModTime(), fi.Size(), false
	return tok, nil
}

func (s *fileSource) invalidate(string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.force = true
	return true
}
