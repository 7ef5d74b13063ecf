package bikeep

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
)

const (
	secretTokenPrefix = "AT-f00dfeed-"
	secretAccessKey   = "AK-5b1e-user-door-key"
)

// lockedBuffer is a goroutine-safe log sink.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// secretCases are servers that try hard to get a secret into an error.
func secretCases() []nastyCase {
	deviceWithKey := `{"id":"dev-k","user":{"access_key":"` + secretAccessKey + `","id":"u"},"has_camera":"yes"}`
	echo := func(status int, contentType string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(status)
			if contentType == "application/json" {
				fmt.Fprintf(w, `{"error_code":"ERRORS.%s","error_message":"token %s key %s","correlation_id":"%s"}`,
					tok, tok, secretAccessKey, tok)
				return
			}
			fmt.Fprintf(w, "<html><body>Your token %s was rejected</body></html>", tok)
		}
	}
	return []nastyCase{
		{name: "partial list with an access key", handler: respond(200, `{"data":[`+deviceWithKey+`,{"id":"ok"}]}`), op: listDevices},
		{name: "wrong-typed access key", handler: respond(200, `{"id":"d","user":{"access_key":{"k":"`+secretAccessKey+`"}}}`), op: getDevice},
		{name: "HTML body echoing the token", handler: echo(500, "text/html"), op: getDevice},
		{name: "envelope echoing the token", handler: echo(400, "application/json"), op: getDevice},
		{name: "401 echoing the token", handler: echo(401, "application/json"), op: getDevice},
		{name: "POST 503 echoing the token", handler: echo(503, "application/json"), op: sendSync},
		{name: "429 echoing the token", handler: echo(429, "text/plain"), op: sendSync},
	}
}

func TestSecretsNeverInErrorsOrLogs(t *testing.T) {
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var errs []string
	for _, tc := range append(nastyCases(), secretCases()...) {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTokenServerPrefix(t, testClientID, testClientSecret, 3600, secretTokenPrefix)
			opts := append([]Option{
				WithClientCredentials(ts.URL+"/oauth2/token", testClientID, testClientSecret),
				WithLogger(logger),
			}, tc.opts...)
			c, _, _ := newTestClient(t, tc.handler, opts...)
			_, err := tc.op(context.Background(), c)
			if err != nil {
				errs = append(errs, err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err))
				// What a caller would do with it.
				logger.Error("call failed", "err", err)
			}
		})
	}
	// And a token endpoint that rejects (and echoes) the secret.
	ts := newTokenServerPrefix(t, testClientID, "another-secret", 3600, secretTokenPrefix)
	c, _, _ := newTestClient(t, respond(200, `{}`),
		WithClientCredentials(ts.URL+"/oauth2/token", testClientID, testClientSecret), WithLogger(logger))
	if _, err := c.GetDevice(context.Background(), "d"); err != nil {
		errs = append(errs, err.Error())
		logger.Error("call failed", "err", err)
	}

	if len(errs) < 3*25 {
		t.Fatalf("only %d error strings collected: the cases did not run", len(errs))
	}
	for _, s := range append(errs, logs.String()) {
		for _, secret := range []string{testClientSecret, secretTokenPrefix, secretAccessKey} {
			if strings.Contains(s, secret) {
				t.Errorf("secret %q leaked into %q", secret, s)
			}
		}
		if strings.Contains(s, "Bearer") || strings.Contains(s, "http://127.0.0.1") {
			t.Errorf("header or raw URL in %q", s)
		}
	}
	if !strings.Contains(logs.String(), "route=/device/v1/devices/{id}") {
		t.Error("debug log does not name route templates; did logging run at all?")
	}
}
