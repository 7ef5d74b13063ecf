package httpx

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Defaults of Settings.
const (
	DefaultMaxBodyBytes int64 = 8 << 20
	DefaultMaxAttempts        = 4
	DefaultMinWait            = 250 * time.Millisecond
	DefaultMaxWait            = 10 * time.Second
)

// Settings are the options both vendor clients take. The Set methods
// validate, so a bad value is an error in either client rather than being
// ignored by one of them.
type Settings struct {
	HTTPClient   *http.Client // nil: a plain client
	Instrumenter Instrumenter // nil: Nop
	Logger       *slog.Logger // nil: discard
	MaxBodyBytes int64        // 0: DefaultMaxBodyBytes
	MaxAttempts  int          // 0: DefaultMaxAttempts
	MinWait      time.Duration
	MaxWait      time.Duration
	retrySet     bool
}

// SetHTTPClient sets the base HTTP client (transport, timeout, TLS). It is
// copied, never modified.
func (s *Settings) SetHTTPClient(hc *http.Client) error {
	if hc == nil {
		return errors.New("nil http client")
	}
	s.HTTPClient = hc
	return nil
}

// SetInstrumenter sets the observer of the client's traffic.
func (s *Settings) SetInstrumenter(in Instrumenter) error {
	if in == nil {
		return errors.New("nil instrumenter")
	}
	s.Instrumenter = in
	return nil
}

// SetLogger sets the logger of retries and backoffs.
func (s *Settings) SetLogger(l *slog.Logger) error {
	if l == nil {
		return errors.New("nil logger")
	}
	s.Logger = l
	return nil
}

// SetMaxBodyBytes caps a response body.
func (s *Settings) SetMaxBodyBytes(n int64) error {
	if n <= 0 {
		return fmt.Errorf("max body bytes must be positive, got %d", n)
	}
	s.MaxBodyBytes = n
	return nil
}

// SetRetry sets at most maxAttempts attempts per request, with waits
// doubling from minWait up to maxWait.
func (s *Settings) SetRetry(maxAttempts int, minWait, maxWait time.Duration) error {
	if maxAttempts < 1 {
		return fmt.Errorf("max attempts must be at least 1, got %d", maxAttempts)
	}
	if minWait < 0 || maxWait < minWait {
		return fmt.Errorf("retry waits: need 0 <= min (%s) <= max (%s)", minWait, maxWait)
	}
	s.MaxAttempts, s.MinWait, s.MaxWait, s.retrySet = maxAttempts, minWait, maxWait, true
	return nil
}

// withDefaults fills what was not set.
func (s Settings) withDefaults() Settings {
	if s.HTTPClient == nil {
		s.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if s.Instrumenter == nil {
		s.Instrumenter = Nop{}
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.MaxBodyBytes <= 0 {
		s.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if !s.retrySet {
		s.MaxAttempts, s.MinWait, s.MaxWait = DefaultMaxAttempts, DefaultMinWait, DefaultMaxWait
	}
	return s
}
